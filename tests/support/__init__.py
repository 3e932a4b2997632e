"""Test support for h2stream, one module per job (imported as ``support.<module>``; tests/ is
on sys.path through pytest's ``pythonpath`` option):

- ``commands``: the repository, the real clients a test needs, h2stream's command line.
- ``servers``: servers on loopback, as a child process or in this process; worker pids.
- ``clients``: raw HTTP/2 clients on real sockets (h2 driven by hand, raw frames), sockets.
- ``frames``: the one builder of crafted frames and parser of received bytes.
- ``recording``: the sink unit tests put where a socket would be.
- ``curl``: every curl command line; ``downloads``: client output hashed as it streams.
- ``h2load``: h2load runs and their summary; ``metrics``: the metrics listener, scraped.
- ``polling``: the one way to wait for something (a deadline, never a bare sleep).
- ``files``: the served files and their digests; ``attacks``: the attack tests' checks.

Fixtures live in ``tests/conftest.py``; nothing imports from it.
"""
