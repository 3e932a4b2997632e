"""PROXY protocol in front of TLS: an L4 balancer passing TLS through (HAProxy ``mode tcp``
with ``send-proxy-v2``, AWS NLB) puts the header before the ClientHello. The header is read
off the socket without reading past it (io/proxy_peek.py), then TLS starts; ALPN, the client
address, refusals and timeouts behave as on the other listeners.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.commands import require
from support.edge import EdgeCounters, HAProxyProcess, closed_by_server, header
from support.frames import (
    DATA,
    GOAWAY,
    HEADERS,
    PREFACE,
    headers,
    request_block,
    settings,
    take_frames,
)
from support.metrics import metrics_url
from support.polling import wait_until
from support.servers import ServerProcess

CONFIG = """
global
    stats socket {stats} mode 600 level admin
defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend edge
    bind fd@%(frontend)d
    default_backend nodes
backend nodes
    server n1 127.0.0.1:%(port)d send-proxy-v2
"""


@pytest.fixture
def node(server_factory: Callable[..., ServerProcess], tmp_path: Path) -> ServerProcess:
    return server_factory(
        "--proxy-protocol", "--self-signed", "--max-connections-per-client", "2",
        "--access-log", str(tmp_path / "access.log"), "--metrics-bind", "127.0.0.1:0",
        "--proxy-header-timeout", "1",
    )  # fmt: skip


@pytest.fixture
def passthrough(node: ServerProcess, tmp_path: Path) -> Iterator[int]:
    """HAProxy passing TLS through to ``node`` with a PROXY v2 header; its port."""
    require("haproxy")
    frontend = socket.socket()
    frontend.bind(("127.0.0.1", 0))
    frontend.listen(128)
    haproxy = HAProxyProcess(
        CONFIG % {"frontend": frontend.fileno(), "port": node.port}, tmp_path,
        (frontend.fileno(),),
    )  # fmt: skip
    port = frontend.getsockname()[1]
    frontend.close()
    try:
        # Up once its admin socket answers (no health checks here: they would send no header).
        assert wait_until(lambda: haproxy.states("nodes"), 15, 0.1), haproxy.stop()
        yield port
    finally:
        print(haproxy.stop())


def _curl(port: int, source: str, *args: str) -> str:
    got = subprocess.run(
        [require("curl"), "-s", "-k", "-m", "10", "--interface", source, *args,
         "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
         f"https://127.0.0.1:{port}/hello.txt"],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    return got.stdout


def test_tls_passed_through_haproxy_names_the_client(
    node: ServerProcess, passthrough: int, tmp_path: Path
) -> None:
    assert node.url.startswith("https:")
    assert _curl(passthrough, "127.0.0.2", "--http2") == "200 2"
    assert _curl(passthrough, "127.0.0.2", "--http1.1") == "200 1.1"
    log = tmp_path / "access.log"
    assert wait_until(lambda: log.read_text().count("127.0.0.2 - - [") >= 2, 5), log.read_text()
    served = [line for line in log.read_text().splitlines() if "curl/" in line]
    assert served and all(line.startswith("127.0.0.2 ") for line in served), served
    got = EdgeCounters(metrics_url(node)).read()
    assert got["headers"].get("v2", 0) >= 2, got
    assert "Traceback" not in node.log_text()


def _client_hello() -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO, bytes]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return tls, incoming, outgoing, outgoing.read()


def test_header_and_client_hello_in_one_write(node: ServerProcess) -> None:
    """The case the peek exists for: the ClientHello arrives in the same segment as the
    header, so reading the socket past the header would swallow it."""
    tls, incoming, outgoing, hello = _client_hello()
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
        sock.sendall(header("192.0.2.7", node.port) + hello)
        while True:
            data = sock.recv(65536)
            assert data, "closed during the handshake"
            incoming.write(data)
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
        sock.sendall(outgoing.read())
        assert tls.selected_alpn_protocol() == "h2"
        tls.write(PREFACE + settings() + headers(1, request_block("/hello.txt")))
        sock.sendall(outgoing.read())
        received = bytearray()
        body = b""
        while b"hello, h2stream" not in body:
            data = sock.recv(65536)
            assert data, f"closed before the response: {body!r}"
            incoming.write(data)
            # One read gives one TLS record's bytes: take every record that arrived.
            while True:
                try:
                    received += tls.read(65536)
                except ssl.SSLWantReadError:
                    break
            frames, used = take_frames(received)
            del received[:used]
            kinds = {f.kind for f in frames if f.stream_id == 1}
            assert kinds <= {HEADERS, DATA}, kinds
            body += b"".join(f.payload for f in frames if f.kind == DATA and f.stream_id == 1)
    assert body == b"hello, h2stream\n"


def test_bad_or_missing_headers_before_tls_are_closed_and_counted(node: ServerProcess) -> None:
    counters = EdgeCounters(metrics_url(node))
    _, _, _, hello = _client_hello()
    # A ClientHello with no header: refused, never handshaken.
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
        sock.sendall(hello)
        assert closed_by_server(sock)
    # Half a header, then silence: the header timeout (1 s here) closes it.
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
        sock.sendall(header("192.0.2.8", node.port)[:10])
        assert closed_by_server(sock, timeout=5)
    got = counters.read()["errors"]
    assert got.get("timeout", 0) >= 1 and sum(got.values()) >= 2, got


def test_per_client_limit_answers_over_tls(node: ServerProcess) -> None:
    """The third connection of one client (by its header) is refused after the handshake, in
    the protocol ALPN chose: SETTINGS and GOAWAY; another client is still served."""
    held = []
    try:
        for _ in range(2):
            sock = socket.create_connection(("127.0.0.1", node.port), timeout=10)
            sock.sendall(header("192.0.2.9", node.port))
            held.append(ssl_wrap(sock))
        third = socket.create_connection(("127.0.0.1", node.port), timeout=10)
        third.sendall(header("192.0.2.9", node.port))
        with ssl_wrap(third) as tls:
            answer = b""
            try:
                while chunk := tls.recv(65536):
                    answer += chunk
            except (ssl.SSLError, OSError):
                pass
        frames, _ = take_frames(answer)
        assert [f.kind for f in frames][-1:] == [GOAWAY], frames
        other = socket.create_connection(("127.0.0.1", node.port), timeout=10)
        other.sendall(header("192.0.2.10", node.port))
        with ssl_wrap(other) as tls:
            tls.sendall(PREFACE + settings() + headers(1, request_block("/hello.txt")))
            got = b""
            while b"hello, h2stream" not in got:
                chunk = tls.recv(65536)
                assert chunk, "the second client was not served"
                got += chunk
    finally:
        for sock in held:
            sock.close()
    counters = EdgeCounters(metrics_url(node)).read()
    assert counters["limits"].get("client_connections", 0) >= 1, counters


def ssl_wrap(sock: socket.socket) -> ssl.SSLSocket:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    return context.wrap_socket(sock, server_hostname="localhost")
