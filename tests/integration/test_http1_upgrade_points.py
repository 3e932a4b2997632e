"""``Upgrade: h2c`` only where it may be taken (RFC 7540 section 3.2, RFC 9110 section 7.8):
a malformed HTTP2-Settings value is a 400 before any 101, an HTTP/1.0 request's Upgrade is
ignored, two Host fields are a 400 (RFC 9112 section 3.2), and an upgrade request with a body
is served as ordinary HTTP/1.1 with keep-alive going on.

Each case runs on a listener speaking HTTP/1.1 and HTTP/2 (the default) and on an HTTP/2-only
one (``--http 2``), where anything not upgraded is refused.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.servers import ServerProcess

UPGRADE = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
# SETTINGS_MAX_CONCURRENT_STREAMS 100, INITIAL_WINDOW_SIZE 33554432, ENABLE_PUSH 0 (curl's).
GOOD_SETTINGS = b"AAMAAABkAAQCAAAAAAIAAAAA"
FOLLOW_UP = b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


@pytest.fixture(scope="module", params=["1.1,2", "2"], ids=["http1-and-h2c", "h2c-only"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, str]]:
    root = tmp_path_factory.mktemp("upgrade")
    (root / "hello.txt").write_bytes(b"hello, h2stream\n")
    started = ServerProcess(Path(root), "--http", request.param)
    try:
        yield started, request.param
    finally:
        started.stop()


def exchange(port: int, data: bytes, deadline: float = 3.0) -> bytes:
    """Send ``data``; what came back before the server closed (or the deadline)."""
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=deadline) as sock:
        sock.sendall(data)
        end = time.monotonic() + deadline
        while (left := end - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            received += chunk
    return bytes(received)


def statuses(received: bytes) -> list[int]:
    """The status of every response head in ``received`` (bodies here hold no CRLF pairs)."""
    return [
        int(part.split(b" ", 2)[1])
        for part in received.split(b"HTTP/1.")[1:]
        if part[:2] in (b"1 ", b"0 ")
    ]


def upgrade_request(settings: bytes, extra: bytes = b"", version: bytes = b"1.1") -> bytes:
    head = b"GET /hello.txt HTTP/" + version + b"\r\nHost: x\r\n" + UPGRADE
    return head + b"HTTP2-Settings: " + settings + b"\r\n" + extra + b"\r\n"


@pytest.mark.parametrize(
    "settings",
    [b"!!not-base64!!", b"AAMAAA", b"AAIAAAAC", b"AAUAABAA"],
    ids=["not base64url", "not whole settings", "ENABLE_PUSH 2", "MAX_FRAME_SIZE too small"],
)
def test_a_malformed_http2_settings_value_is_400_not_101(
    server: tuple[ServerProcess, str], settings: bytes
) -> None:
    process, _ = server
    received = exchange(process.port, upgrade_request(settings))
    assert statuses(received) == [400], received[:300]
    assert b"101" not in received.split(b"\r\n", 1)[0]


def test_a_good_upgrade_still_switches(server: tuple[ServerProcess, str]) -> None:
    process, _ = server
    received = exchange(process.port, upgrade_request(GOOD_SETTINGS), deadline=1.0)
    assert received.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), received[:300]


def test_an_http10_upgrade_is_ignored(server: tuple[ServerProcess, str]) -> None:
    process, http = server
    received = exchange(process.port, upgrade_request(GOOD_SETTINGS, version=b"1.0"))
    assert b"101 Switching" not in received
    if http == "2":
        assert statuses(received) == [505], received[:300]  # HTTP/1.x is not served there
    else:
        assert statuses(received) == [200], received[:300]
        assert received.endswith(b"hello, h2stream\n")


def test_two_host_fields_are_400_not_an_upgrade(server: tuple[ServerProcess, str]) -> None:
    process, _ = server
    received = exchange(process.port, upgrade_request(GOOD_SETTINGS, extra=b"Host: y\r\n"))
    assert statuses(received) == [400], received[:300]


def test_two_http2_settings_fields_forbid_the_upgrade(server: tuple[ServerProcess, str]) -> None:
    process, http = server
    twice = b"HTTP2-Settings: " + GOOD_SETTINGS + b"\r\n"
    received = exchange(process.port, upgrade_request(GOOD_SETTINGS, extra=twice))
    assert b"101 Switching" not in received
    assert statuses(received) == ([505] if http == "2" else [200]), received[:300]


@pytest.mark.parametrize(
    "body",
    [
        b"Content-Length: 5\r\n\r\nhello",
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ],
    ids=["content-length", "chunked"],
)
def test_an_upgrade_with_a_body_is_served_as_http11(
    server: tuple[ServerProcess, str], body: bytes
) -> None:
    process, http = server
    post = b"POST /_h2stream/sink HTTP/1.1\r\nHost: x\r\n" + UPGRADE
    post += b"HTTP2-Settings: " + GOOD_SETTINGS + b"\r\n" + body
    received = exchange(process.port, post + FOLLOW_UP)
    assert b"101 Switching" not in received
    if http == "2":
        assert statuses(received) == [505], received[:300]
        return
    # The body was read (the sink counts it), and keep-alive went on to the next request.
    assert statuses(received) == [200, 200], received[:600]
    assert b'"bytes": 5' in received
    assert received.endswith(b"hello, h2stream\n")
