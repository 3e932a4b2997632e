"""What is not HTTP/2 on the port: HTTP/1.1 requests on an HTTP/2-only listener (``--http 2``),
garbage, truncated prefaces, TLS without h2.

Each gets a short valid HTTP/1.1 error response or a clean close within a few seconds, never a
connection left hanging; and the server keeps serving afterwards. A default listener serves
the same HTTP/1.x requests (the test_http1_* modules test that in depth).
"""

from __future__ import annotations

import os
import random
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.clients import EXCHANGE_DEADLINE as DEADLINE
from support.clients import Exchange, exchange, tls_socket
from support.curl import run_curl
from support.frames import FRAME_SIZE_ERROR, GOAWAY, PREFACE, PROTOCOL_ERROR, parse_frames
from support.servers import ServerProcess


@pytest.fixture(scope="module")
def h2only_server(files_root: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(files_root, "--http", "2")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def h2only_tls_server(files_root: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(files_root, "--self-signed", "--http", "2")
    yield server
    server.stop()


@dataclass
class Http1Response:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes


def parse_http1(data: bytes) -> Http1Response:
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, f"no complete HTTP/1.1 response head in {data[:200]!r}"
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    assert version == "HTTP/1.1", lines[0]
    code, _, reason = rest.partition(" ")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        assert colon and name and name == name.strip(), f"malformed header line {line!r}"
        headers[name.lower()] = value.strip()
    return Http1Response(int(code), reason, headers, body)


def assert_valid_error(response: Http1Response, *, head: bool = False) -> None:
    """A complete, self-delimited error response that ends the connection."""
    assert 400 <= response.status <= 599
    assert response.headers.get("connection", "").lower() == "close"
    if head:
        # A response to HEAD never has content (RFC 9110 section 9.3.2).
        assert response.body == b""
    else:
        assert int(response.headers["content-length"]) == len(response.body)


def assert_serving(server: ServerProcess) -> None:
    """A real client still gets a file from the server."""
    options = ["-k", "--http2"] if server.url.startswith("https") else ["--http2-prior-knowledge"]
    result = run_curl(*options, f"{server.url}/hello.txt", max_time=20)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hello, h2stream\n"


def assert_closed_cleanly(result: Exchange) -> None:
    assert result.outcome in ("eof", "reset"), (
        f"server left the connection open {DEADLINE} s after {result.received[:100]!r}"
    )
    if result.received:
        assert_valid_error(parse_http1(result.received))


# --------------------------------------------------------------------------- HTTP/1.1


@pytest.mark.parametrize(
    "head",
    [
        b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\n\r\n",
        # Upgrade: h2c without the HTTP2-Settings field it requires.
        b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nUpgrade: h2c\r\n"
        b"Connection: Upgrade\r\n\r\n",
        b"POST /hello.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello",
        b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ],
    ids=["get-1.1", "get-1.0", "websocket", "h2c-no-settings", "post", "options"],
)
def test_http1_request_gets_505_naming_http2(h2only_server: ServerProcess, head: bytes) -> None:
    result = exchange(h2only_server.port, head)
    assert result.outcome == "eof", "the server must close after its HTTP/1.1 answer"
    response = parse_http1(result.received)
    assert response.status == 505
    assert_valid_error(response)
    assert b"HTTP/2" in response.body
    assert_serving(h2only_server)


def test_http1_head_gets_505_without_body(h2only_server: ServerProcess) -> None:
    result = exchange(h2only_server.port, b"HEAD /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert result.outcome == "eof"
    response = parse_http1(result.received)
    assert response.status == 505
    assert_valid_error(response, head=True)
    assert_serving(h2only_server)


def test_curl_http11_gets_505(h2only_server: ServerProcess) -> None:
    result = run_curl(
        "--http1.1",
        "-w",
        "\n%{http_code} %{http_version}",
        f"{h2only_server.url}/hello.txt",
        max_time=20,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    body, _, status = result.stdout.rpartition("\n")
    assert status == "505 1.1"
    assert "HTTP/2" in body
    assert_serving(h2only_server)


@pytest.mark.parametrize("version", ["--http1.1", "--http1.0"])
def test_default_listener_serves_http1(h2c_server: ServerProcess, version: str) -> None:
    """The same requests the HTTP/2-only listener refuses are served by a default one."""
    result = run_curl(
        version, "-w", "\n%{http_code}", f"{h2c_server.url}/hello.txt", max_time=20, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello, h2stream\n\n200"


def test_oversized_http1_head_is_refused(h2c_server: ServerProcess) -> None:
    head = b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nX-Filler: " + b"a" * (64 * 1024)
    result = exchange(h2c_server.port, head)
    assert result.outcome in ("eof", "reset")
    if result.received:
        response = parse_http1(result.received)
        assert response.status in (400, 431)
        assert_valid_error(response)
    assert_serving(h2c_server)


# --------------------------------------------------------------------------- garbage


def _garbage(seed: int, size: int) -> bytes:
    data = bytearray(random.Random(seed).randbytes(size))
    # Not a prefix of the preface, so the server cannot be waiting for the rest of one.
    if data[:1] == b"P":
        data[0] = 0
    return bytes(data)


@pytest.mark.parametrize("half_close", [True, False], ids=["then-eof", "then-wait"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_garbage_is_closed(h2c_server: ServerProcess, seed: int, half_close: bool) -> None:
    """Bytes that cannot begin an HTTP/1.x request or the preface: 400 or close, at once.

    Without the half-close the client just waits, as a confused client would: the bytes already
    rule out HTTP, so waiting for more of them cannot help.
    """
    result = exchange(h2c_server.port, _garbage(seed, 512), half_close=half_close)
    assert_closed_cleanly(result)
    assert_serving(h2c_server)


def test_tls_client_hello_on_cleartext_port_is_closed(h2c_server: ServerProcess) -> None:
    """A client speaking TLS to the h2c port waits for a ServerHello: it must not wait forever."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    sock = socket.create_connection(("127.0.0.1", h2c_server.port), timeout=DEADLINE)
    started = time.monotonic()
    with pytest.raises((ssl.SSLError, OSError)) as failure:
        context.wrap_socket(sock, server_hostname="localhost")
    sock.close()
    assert not isinstance(failure.value, TimeoutError), (
        f"handshake hung for {time.monotonic() - started:.1f} s: no answer, no close"
    )
    assert_serving(h2c_server)


@pytest.mark.parametrize("cut", [1, 3, 16, len(PREFACE) - 1])
def test_truncated_preface_then_eof_is_closed(h2c_server: ServerProcess, cut: int) -> None:
    result = exchange(h2c_server.port, PREFACE[:cut], half_close=True)
    assert_closed_cleanly(result)
    assert_serving(h2c_server)


@pytest.mark.parametrize(
    "data",
    [
        PREFACE[:18] + b"XX\r\n\r\n",
        PREFACE[:18] + b"SX",
        b"PRI * HTTP/1.1\r\n\r\n",
        PREFACE[:-1] + b"\r",
    ],
    ids=["bad-tail", "bad-second-line", "pri-1.1", "last-byte"],
)
def test_broken_preface_is_refused(h2c_server: ServerProcess, data: bytes) -> None:
    """Bytes that start like the preface and then leave it: refused, not waited on."""
    result = exchange(h2c_server.port, data)
    assert_closed_cleanly(result)
    assert_serving(h2c_server)


def _goaway_code(received: bytes) -> int | None:
    for frame in parse_frames(received, whole=False):
        if frame.kind == GOAWAY and len(frame.payload) >= 8:
            return int.from_bytes(frame.payload[4:8], "big")
    return None


@pytest.mark.parametrize(
    "after",
    [
        # A SETTINGS frame whose length is not a multiple of 6.
        b"\x00\x00\x05\x04\x00\x00\x00\x00\x00" + b"\x00" * 5,
        # A frame header announcing 4 MiB, more than the 16 KiB MAX_FRAME_SIZE we advertise:
        # decidable from the 9 header bytes, no need to wait for the announced body.
        b"\x00\x40\x00\x04\x00\x00\x00\x00\x00" + b"\x00" * 64,
        b"\xff" * 100,
        _garbage(7, 200),
    ],
    ids=["settings-length", "oversized-frame", "all-ones", "random"],
)
def test_garbage_after_preface_gets_goaway(h2c_server: ServerProcess, after: bytes) -> None:
    result = exchange(h2c_server.port, PREFACE + after)
    assert result.outcome in ("eof", "reset"), (
        f"connection still open {DEADLINE} s after a broken first frame"
    )
    assert _goaway_code(result.received) in (PROTOCOL_ERROR, FRAME_SIZE_ERROR)
    assert_serving(h2c_server)


def test_many_garbage_connections_then_serving(h2c_server: ServerProcess) -> None:
    """A burst of junk connections, half-closed, leaves the server as it was."""
    for seed in range(40):
        data = _garbage(100 + seed, 1 + seed * 37) if seed % 2 else PREFACE[: seed % 24]
        assert_closed_cleanly(exchange(h2c_server.port, data, half_close=True))
    assert_serving(h2c_server)


# --------------------------------------------------------------------------- TLS


@pytest.mark.parametrize("alpn", [["http/1.1"], None], ids=["alpn-http1.1", "no-alpn"])
def test_tls_without_h2_is_refused(
    h2only_tls_server: ServerProcess, alpn: list[str] | None
) -> None:
    tls_server = h2only_tls_server
    try:
        sock = tls_socket(tls_server.port, alpn, timeout=DEADLINE)
    except ssl.SSLError:
        pass  # refused in the handshake (no_application_protocol alert): clean too
    else:
        assert sock.selected_alpn_protocol() != "h2"
        result = exchange(
            tls_server.port, b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n", sock=sock
        )
        assert result.outcome in ("eof", "reset"), "TLS connection without h2 left open"
        assert b"hello, h2stream" not in result.received
        if result.received:
            response = parse_http1(result.received)
            assert response.status == 505
            assert_valid_error(response)
    assert_serving(tls_server)


def test_curl_tls_http11_is_refused(h2only_tls_server: ServerProcess) -> None:
    tls_server = h2only_tls_server
    result = run_curl(
        "-k",
        "--http1.1",
        "-w",
        "\n%{http_code}",
        f"{tls_server.url}/hello.txt",
        max_time=20,
        text=True,
    )
    # Either a 505 over HTTP/1.1, or a connection closed before any response (code 000).
    body, _, status = result.stdout.rpartition("\n")
    assert "hello, h2stream" not in body
    if result.returncode == 0:
        assert status == "505"
        assert "HTTP/2" in body
    else:
        assert status == "000"
        assert result.returncode != 28, "curl timed out: the server neither answered nor closed"
    assert_serving(tls_server)


def test_garbage_on_tls_port_is_closed(tls_server: ServerProcess) -> None:
    for data in (b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n", _garbage(11, 300), PREFACE):
        assert exchange(tls_server.port, data).outcome in ("eof", "reset")
    assert_serving(tls_server)


@pytest.mark.parametrize("listener", ["tls_server", "h2only_tls_server"])
def test_tls_h2_still_works_next_to_refusals(request: pytest.FixtureRequest, listener: str) -> None:
    """After the refusals above, ALPN h2 is selected and a file comes back."""
    tls_server: ServerProcess = request.getfixturevalue(listener)
    sock = tls_socket(tls_server.port, ["h2", "http/1.1"], timeout=DEADLINE)
    try:
        assert sock.selected_alpn_protocol() == "h2"
    finally:
        sock.close()
    assert_serving(tls_server)


@pytest.mark.parametrize("alpn", [["http/1.1"], None], ids=["alpn-http1.1", "no-alpn"])
def test_tls_without_h2_speaks_http1(tls_server: ServerProcess, alpn: list[str] | None) -> None:
    sock = tls_socket(tls_server.port, alpn, timeout=DEADLINE)
    assert sock.selected_alpn_protocol() == (alpn[0] if alpn else None)
    result = exchange(
        tls_server.port,
        b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        sock=sock,
    )
    assert result.outcome == "eof"
    response = parse_http1(result.received)
    assert response.status == 200
    assert response.body == b"hello, h2stream\n"


def test_urandom_garbage_burst(h2c_server: ServerProcess) -> None:
    """Unseeded garbage too, in case a byte pattern the seeds miss upsets the sniffer."""
    for _ in range(20):
        data = os.urandom(256)
        if data[:1] == b"P":
            data = b"\x00" + data[1:]
        assert_closed_cleanly(exchange(h2c_server.port, data, half_close=True))
    assert_serving(h2c_server)
