"""ASGI scope["client"] and scope["server"]: both ends with their ports, over HTTP/2 and
HTTP/1.1, behind a PROXY header (the header's source and destination), on a Unix socket
(the socket's path and no port)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.clients import RawH2Client
from support.commands import REPO
from support.edge import proxied, read_all
from support.servers import ServerProcess

APPS = REPO / "tests"
APP = "asgi_apps.addresses_app:app"


def _asgi(factory: Callable[..., ServerProcess], *args: str) -> ServerProcess:
    return factory("--app", APP, *args, root=None, cwd=APPS)


def _over_h2(sock: socket.socket) -> Any:
    client = RawH2Client(0, sock=sock, auto_ack=True)
    try:
        stream_id = client.request("/")
        response = client.responses[stream_id]
        assert client.until(lambda: response.ended, 10)
        assert response.status == 200
        return json.loads(bytes(response.body))
    finally:
        client.close()


def _over_http1(sock: socket.socket) -> Any:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = read_all(sock).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return json.loads(body)


@pytest.mark.parametrize("over", [_over_h2, _over_http1], ids=["h2c", "http1"])
def test_client_and_server_with_ports(
    server_factory: Callable[..., ServerProcess], over: Callable[[socket.socket], Any]
) -> None:
    server = _asgi(server_factory)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    host, port = sock.getsockname()
    assert over(sock) == {"client": [host, port], "server": ["127.0.0.1", server.port]}


@pytest.mark.parametrize("over", [_over_h2, _over_http1], ids=["h2c", "http1"])
def test_proxy_header_names_both_ends(
    server_factory: Callable[..., ServerProcess], over: Callable[[socket.socket], Any]
) -> None:
    server = _asgi(server_factory, "--proxy-protocol")
    # tests.support.edge.header: source port 40000, destination the listener's own port.
    sock = proxied(server.port, "203.0.113.9")
    assert over(sock) == {"client": ["203.0.113.9", 40000], "server": ["127.0.0.1", server.port]}


def test_unix_socket_has_a_path_and_no_client(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    path = tmp_path / "h2s.sock"
    _asgi(server_factory, "--bind", f"unix:{path}", "--bind", "127.0.0.1:0")
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(str(path))
    assert _over_http1(sock) == {"client": None, "server": [str(path), None]}
