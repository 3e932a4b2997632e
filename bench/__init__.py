"""h2load benchmark harness: h2stream against peer HTTP/2 servers, started and stopped here.

Run ``python -m bench --help``. Results: a Markdown table on stdout, JSON and a PNG under
``bench/out/`` (git-ignored), and with ``--save-table`` the table under ``bench/results/``.
"""
