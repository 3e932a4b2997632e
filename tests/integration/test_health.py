"""/healthz and /readyz on the metrics listener, and that listener's manners with bad clients.

/readyz turns 503 as soon as a SIGTERM starts the drain, while /healthz and /metrics keep
answering until the drain ends: a load balancer stops sending new work, Prometheus still sees
the in-flight streams finish.
"""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from support.clients import RawH2Client, exchange
from support.metrics import get, scrape
from support.polling import wait_until


def test_health_answers(observed: Callable[..., tuple[Any, str]]) -> None:
    _, base = observed()
    assert get(base + "/healthz")[::2] == (200, b"ok\n")
    assert get(base + "/readyz")[::2] == (200, b"ready\n")
    assert get(base + "/nope")[0] == 404
    host, port = base.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        # Keep-alive: several requests on one connection, HEAD without a body.
        connection.request("HEAD", "/metrics")
        head = connection.getresponse()
        assert head.status == 200 and head.read() == b""
        assert int(head.headers["Content-Length"]) > 1000
        connection.request("GET", "/healthz")
        assert connection.getresponse().read() == b"ok\n"
        connection.request("POST", "/readyz", body=b"")
        assert connection.getresponse().status == 405
    finally:
        connection.close()


def test_garbage_and_slow_clients(observed: Callable[..., tuple[Any, str]]) -> None:
    _, base = observed()
    host, port = base.removeprefix("http://").rsplit(":", 1)
    garbage = b"\x16\x03\x01\x02\x00garbage\r\n\r\n"
    assert exchange(int(port), garbage).received.startswith(b"HTTP/1.1 400")
    assert exchange(
        int(port), b"GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
    ).received.startswith(b"HTTP/1.1 400")
    too_long = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000
    assert exchange(int(port), too_long).received.startswith(b"HTTP/1.1 431")
    # A client that half-closes mid-head gets a 400 and the connection is closed.
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /heal")
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(100).startswith(b"HTTP/1.1 400")
    # Idle and trickling clients hold a connection each, but never the listener.
    idle = [socket.create_connection((host, int(port)), timeout=10) for _ in range(3)]
    try:
        idle[0].sendall(b"GET /metrics HT")
        assert scrape(base).value("h2stream_connections_active") == 0
        assert get(base + "/healthz")[0] == 200
    finally:
        for sock in idle:
            sock.close()


def test_readyz_turns_503_while_draining(observed: Callable[..., tuple[Any, str]]) -> None:
    server, base = observed("--graceful-timeout", "6")
    client = RawH2Client(server.port, auto_ack=False)
    try:
        stream_id = client.request("/mib.bin")
        # A stalled download: the drain has to wait for it.
        assert client.until(lambda: len(client.responses[stream_id].body) >= 65535)
        assert get(base + "/readyz")[0] == 200
        server.signal(signal.SIGTERM)
        assert wait_until(lambda: get(base + "/readyz")[0] == 503, timeout=10)
        assert get(base + "/readyz")[2] == b"draining\n"
        assert get(base + "/healthz")[0] == 200
        # (The client's GOAWAY is not read here: h2's client state machine rejects the PING
        # that may follow it; the server's own count says it went out.)
        during = scrape(base)
        # The announcing GOAWAY, and the final one once the notice period is over.
        assert during.value("h2stream_goaway_sent_total", code="NO_ERROR") in (1, 2)
        assert during.value("h2stream_streams_active") == 1
        assert server.proc.poll() is None
    finally:
        client.close()
    # The client went away: the drain ends early and the process exits cleanly.
    try:
        assert server.wait(20) == 0
    except subprocess.TimeoutExpired:
        pytest.fail("server did not exit after its drain")
    with pytest.raises(OSError):
        exchange(int(base.rsplit(":", 1)[1]), b"GET /healthz HTTP/1.1\r\n\r\n", deadline=2)
