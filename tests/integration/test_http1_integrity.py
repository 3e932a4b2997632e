"""HTTP/1.1 bodies arrive whole and leave the way they should: SHA-256 of every test size from
0 B to 256 MiB over cleartext and TLS, zero-copy's share of a cleartext 256 MiB body, and
stalled downloads that cost no more than the transport's bounded buffer."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest
from support.curl import curl_fetch
from support.files import SIZES
from support.metrics import scrape
from support.servers import ServerProcess


@pytest.mark.parametrize("name", list(SIZES))
@pytest.mark.parametrize("listener", ["h2c_server", "tls_server"])
def test_sha256(
    request: pytest.FixtureRequest, listener: str, name: str, digests: dict[str, str]
) -> None:
    server: ServerProcess = request.getfixturevalue(listener)
    fetched, code, version = curl_fetch(f"{server.url}/{name}", "-k", "--http1.1", max_time=60)
    assert fetched.returncode == 0, fetched.stderr
    assert (code, version) == ("200", "1.1")
    assert fetched.size == SIZES[name]
    assert fetched.sha256 == digests[name]


def test_sendfile_carries_a_cleartext_body(
    observed: Callable[..., tuple[ServerProcess, str]], digests: dict[str, str]
) -> None:
    server, metrics = observed()
    before = scrape(metrics).by_label("h2stream_response_body_bytes_total", "mode")
    fetched, code, _ = curl_fetch(f"{server.url}/f256m.bin", "--http1.1", max_time=60)
    assert code == "200" and fetched.sha256 == digests["f256m.bin"]
    after = scrape(metrics).by_label("h2stream_response_body_bytes_total", "mode")
    zero_copy = after.get("sendfile", 0) - before.get("sendfile", 0)
    copied = after.get("copy", 0) - before.get("copy", 0)
    assert zero_copy + copied >= 256 << 20
    assert zero_copy >= 0.95 * (256 << 20), (zero_copy, copied)


STALLED = 200


def test_stalled_downloads_keep_rss_flat(server_factory: Callable[..., ServerProcess]) -> None:
    """Clients that ask for 256 MiB and read nothing: each costs what the socket and the
    transport hold, not the file."""
    server = server_factory()
    socks = []
    warm = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    warm.sendall(b"GET /kib.bin HTTP/1.1\r\nHost: a\r\n\r\n")
    warm.recv(4096)
    time.sleep(0.3)
    baseline = server.rss()
    try:
        for _ in range(STALLED):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET /f256m.bin HTTP/1.1\r\nHost: a\r\n\r\n")
            socks.append(sock)
        time.sleep(2.0)
        grown = server.rss() - baseline
        assert grown < 10 << 20, f"RSS grew by {grown / (1 << 20):.1f} MiB"
        # Still serving meanwhile.
        _, code, _ = curl_fetch(f"{server.url}/hello.txt", "--http1.1", max_time=20)
        assert code == "200"
    finally:
        for sock in socks:
            sock.close()
        warm.close()
