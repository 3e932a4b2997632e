# ruff: noqa: E501 - one vector per line reads as a table
"""Request smuggling and malformed HTTP/1.1 (RFC 9112 sections 6 and 11): each vector, sent on
its own connection and followed by a valid pipelined request, gets its status; the connection
then closes (the follow-up is never answered: nothing after a request we cannot frame is read)
or stays open (the follow-up is answered with 200)."""

from __future__ import annotations

import socket
import time

import pytest
from support.servers import ServerProcess

SINK = b"POST /_h2stream/sink HTTP/1.1\r\nHost: a\r\n"
FOLLOW_UP = b"GET /hello.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
SETTINGS = b"HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n"

# name, request bytes, status, whether the connection stays open.
VECTORS = [
    ("te and cl", SINK + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, False),
    ("cl twice, differing", SINK + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400, False),
    ("cl twice, same", SINK + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400, False),
    ("cl as a list", SINK + b"Content-Length: 3, 3\r\n\r\nabc", 400, False),
    ("cl negative", SINK + b"Content-Length: -1\r\n\r\n", 400, False),
    ("cl with sign", SINK + b"Content-Length: +3\r\n\r\nabc", 400, False),
    ("cl not a number", SINK + b"Content-Length: 3a\r\n\r\nabc", 400, False),
    ("cl over the body cap", SINK + b"Content-Length: 99999999999999\r\n\r\n", 413, False),
    ("te chunked then gzip", SINK + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 501, False),
    ("te gzip then chunked", SINK + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, False),
    ("te identity", SINK + b"Transfer-Encoding: identity\r\n\r\n", 501, False),
    ("te twice", SINK + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501, False),
    ("te in HTTP/1.0", b"POST /_h2stream/sink HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, False),
    ("space before colon", SINK + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400, False),
    ("obs-fold", b"GET /hello.txt HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400, False),
    ("leading space on a field", b"GET /hello.txt HTTP/1.1\r\n Host: a\r\n\r\n", 400, False),
    ("bare CR in a value", b"GET /hello.txt HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400, False),
    ("bare LF line ends", b"GET /hello.txt HTTP/1.1\nHost: a\n\n", 400, False),
    ("NUL in a value", b"GET /hello.txt HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400, False),
    ("control byte in a value", b"GET /hello.txt HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400, False),
    ("control byte in the target", b"GET /hello\x01.txt HTTP/1.1\r\nHost: a\r\n\r\n", 400, False),
    ("DEL in the target", b"GET /hello\x7f.txt HTTP/1.1\r\nHost: a\r\n\r\n", 400, False),
    ("space in the target", b"GET /hel lo.txt HTTP/1.1\r\nHost: a\r\n\r\n", 400, False),
    ("bad chunk size", SINK + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400, False),
    ("chunk size overflow", SINK + b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n", 400, False),
    ("control byte in a chunk extension", SINK + b"Transfer-Encoding: chunked\r\n\r\n1;\x01\r\na\r\n0\r\n\r\n", 400, False),
    ("chunk data without CRLF", SINK + b"Transfer-Encoding: chunked\r\n\r\n1\r\naX0\r\n\r\n", 400, False),
    ("chunk lines ended by LF", SINK + b"Transfer-Encoding: chunked\r\n\r\n1\na\n0\n\n", 400, False),
    ("missing host on 1.1", b"GET /hello.txt HTTP/1.1\r\n\r\n", 400, False),
    ("two host fields", b"GET /hello.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, False),
    ("HTTP/1.2", b"GET /hello.txt HTTP/1.2\r\nHost: a\r\n\r\n", 400, False),
    ("HTTP/0.9 request line", b"GET /hello.txt\r\n\r\n", 400, False),
    ("bad method", b"G@T /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n", 400, False),
    ("target too long", b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414, False),
    ("head too large", b"GET /hello.txt HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 20000 + b"\r\n\r\n", 431, False),
    ("too many fields", b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X%d: a\r\n" % i for i in range(150)) + b"\r\n", 431, False),
    # Valid edge cases: answered, and the connection is kept.
    ("chunk extension", SINK + b"Transfer-Encoding: chunked\r\n\r\n1;x=y\r\na\r\n0\r\n\r\n", 200, True),
    ("absolute-form target", b"GET http://example.com/hello.txt HTTP/1.1\r\nHost: a\r\n\r\n", 200, True),
    ("HTTP/1.0 keep-alive", b"GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 200, True),
    # Upgrade: h2c with a body is served as ordinary HTTP/1.1, not upgraded: the body is
    # framed by its length (or chunks) and keep-alive goes on.
    ("h2c upgrade with a body", SINK + b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n" + SETTINGS + b"Content-Length: 3\r\n\r\nabc", 200, True),
    ("h2c upgrade with a chunked body", SINK + b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n" + SETTINGS + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 200, True),
]  # fmt: skip


def responses(data: bytes) -> list[tuple[int, bytes]]:
    """The (status, body) of each complete HTTP/1.x response in ``data``, in order."""
    found = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        if fields.get(b"transfer-encoding") == b"chunked":
            body = b""
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if not size:
                    rest = (
                        rest.partition(b"\r\n\r\n")[2] if not rest.startswith(b"\r\n") else rest[2:]
                    )
                    break
                body += rest[:size]
                rest = rest[size + 2 :]
        else:
            length = int(fields.get(b"content-length", b"0"))
            body, rest = rest[:length], rest[length:]
        found.append((status, body))
        data = rest
    return found


def send(port: int, data: bytes, deadline: float = 5.0) -> tuple[bytes, str]:
    """Send ``data`` and read until the server closes ("eof"/"reset") or the deadline."""
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=deadline) as sock:
        sock.sendall(data)
        end = time.monotonic() + deadline
        while (left := end - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return bytes(received), "timeout"
            except OSError:
                return bytes(received), "reset"
            if not chunk:
                return bytes(received), "eof"
            received += chunk
    return bytes(received), "timeout"


@pytest.mark.parametrize(
    ("request_bytes", "status", "stays_open"),
    [pytest.param(data, status, open_, id=name) for name, data, status, open_ in VECTORS],
)
def test_vector(
    h2c_server: ServerProcess, request_bytes: bytes, status: int, stays_open: bool
) -> None:
    received, outcome = send(h2c_server.port, request_bytes + FOLLOW_UP)
    answers = responses(received)
    assert outcome in ("eof", "reset"), f"connection left open: {received[:300]!r}"
    assert answers, f"no response: {received[:300]!r}"
    assert answers[0][0] == status, received[:300]
    if stays_open:
        # The follow-up was read and answered on the same connection, then it closed.
        assert [s for s, _ in answers] == [status, 200]
        assert answers[1][1] == b"hello, h2stream\n"
    else:
        assert len(answers) == 1, f"answered after a request it could not frame: {answers}"
        assert b"connection: close" in received.lower()


def test_at_least_25_vectors() -> None:
    assert len(VECTORS) >= 25


def test_server_serves_after_every_vector(h2c_server: ServerProcess) -> None:
    received, _ = send(h2c_server.port, FOLLOW_UP)
    assert responses(received) == [(200, b"hello, h2stream\n")]
