"""A request head repeated byte for byte skips the parser (http1/connection.py): each repeat
must still be its own request, answered as a parsed one would be. Raw sockets against a real
in-process server; the handler reports what each exchange saw."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.servers import InProcessServer, loopback_config
from test_http1_smuggling import responses, send

from h2stream.config import Config
from h2stream.core.exchange import Exchange
from h2stream.handlers.app import App, Request, Response
from h2stream.handlers.build import build_handler as server_handler

GET = b"GET /echo HTTP/1.1\r\nHost: a\r\nX-Request-Id: %s\r\n\r\n"


def build_handler(config: Config) -> Callable[[Exchange], None]:
    app = App()
    served = {"n": 0}

    @app.route("/echo", methods=("GET", "HEAD", "POST", "DELETE"))
    async def echo(request: Request) -> Response:
        served["n"] += 1
        body = await request.body()
        report = {
            "n": served["n"],
            "method": request.method,
            "path": request.raw_path,
            "headers": request.headers,
            "body": body.decode("latin-1"),
        }
        return Response(body=json.dumps(report), content_type="application/json")

    # Unrouted paths: the directory as the server serves it (small-file cache included).
    app.bind(config, fallback=server_handler(config, None, serve_root=True))

    def handler(exchange: Exchange) -> None:
        if exchange.path == b"/mutate":
            # A handler that changes the exchange's field list must not change what the
            # next identical head gives.
            seen = [[n.decode(), v.decode()] for n, v in exchange.headers]
            exchange.headers.append((b"x-added", b"by the handler"))
            exchange.headers[3] = (b":path", b"/elsewhere")
            exchange.respond_bytes(200, json.dumps(seen).encode())
        else:
            app(exchange)

    return handler


@pytest.fixture
def echo_server(files_root: Path) -> Iterator[Callable[..., InProcessServer]]:
    started: list[InProcessServer] = []

    def start(**changes: object) -> InProcessServer:
        config = loopback_config(files_root, **changes)
        server = InProcessServer(config, build_handler(config))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def exchange_reports(data: bytes) -> list[dict[str, Any]]:
    answers = responses(data)
    assert all(status == 200 for status, _ in answers), answers
    return [json.loads(body) for _, body in answers]


def converse(port: int, pieces: list[tuple[bytes, int]]) -> bytes:
    """Send each ``(bytes, answers)`` piece on one connection once the answers before it have
    arrived (so each piece is a read of its own), then wait for its ``answers``."""
    received = b""
    expected = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for piece, answers in pieces:
            sock.sendall(piece)
            if not answers:
                time.sleep(0.2)  # nothing to wait for: let it be read on its own
            expected += answers
            while len(responses(received)) < expected:
                chunk = sock.recv(65536)
                assert chunk, "the server closed the connection"
                received += chunk
    return received


def test_each_repeat_is_a_request_of_its_own(echo_server: Callable[..., InProcessServer]) -> None:
    server = echo_server()
    head = GET % b"same-id"
    received = converse(server.port, [(head, 1)] * 5)
    reports = exchange_reports(received)
    assert [r["n"] for r in reports] == [1, 2, 3, 4, 5]
    for report in reports:
        assert report["method"] == "GET"
        assert report["path"] == "/echo"
        assert ["x-request-id", "same-id"] in report["headers"]


def test_pipelined_repeats_in_one_read_answered_in_order(
    echo_server: Callable[..., InProcessServer],
) -> None:
    server = echo_server()
    data = GET % b"p" * 20 + b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    received, outcome = send(server.port, data)
    assert outcome == "eof"
    reports = exchange_reports(received)
    assert [r["n"] for r in reports] == list(range(1, 22))


def test_a_body_equal_to_the_last_head_stays_a_body(
    echo_server: Callable[..., InProcessServer],
) -> None:
    """The smuggling-shaped case: a POST whose body is, byte for byte, the head just served.
    It must reach the handler as body bytes, never as a request of its own."""
    server = echo_server()
    head = GET % b"first"
    post = b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(head)
    # The head, then the POST's head, then its body in a read of its own, then the head again.
    received = converse(server.port, [(head, 1), (post, 0), (head, 1), (head, 1)])
    reports = exchange_reports(received)
    assert [(r["n"], r["method"]) for r in reports] == [(1, "GET"), (2, "POST"), (3, "GET")]
    assert reports[1]["body"] == head.decode()


def test_a_chunk_equal_to_the_last_head_stays_a_body(
    echo_server: Callable[..., InProcessServer],
) -> None:
    server = echo_server()
    head = b"DELETE /echo HTTP/1.1\r\nHost: a\r\n\r\n"
    post = b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    # The chunk's data arrives as a read of its own, byte for byte the head served before.
    pieces = [(head, 1), (post + b"%x\r\n" % len(head), 0), (head, 0), (b"\r\n0\r\n\r\n", 1)]
    received = converse(server.port, [*pieces, (head, 1)])
    reports = exchange_reports(received)
    assert [r["method"] for r in reports] == ["DELETE", "POST", "DELETE"]
    assert reports[1]["body"] == head.decode()


def test_a_head_split_across_reads_is_parsed(echo_server: Callable[..., InProcessServer]) -> None:
    server = echo_server()
    head = GET % b"split"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head)
        first = sock.recv(65536)
        sock.sendall(head[:20])
        time.sleep(0.2)  # the first part is its own read
        sock.sendall(head[20:])
        received = first
        while len(responses(received)) < 2:
            chunk = sock.recv(65536)
            assert chunk
            received += chunk
    assert [r["n"] for r in exchange_reports(received)] == [1, 2]


def test_the_request_cap_counts_repeats(echo_server: Callable[..., InProcessServer]) -> None:
    server = echo_server(max_requests_per_connection=3)
    received, outcome = send(server.port, GET % b"capped" * 5)
    assert outcome == "eof"
    assert len(responses(received)) == 3
    assert received.count(b"connection: close\r\n") == 1


def test_a_handler_changing_its_fields_does_not_change_the_next(
    echo_server: Callable[..., InProcessServer],
) -> None:
    server = echo_server()
    head = b"GET /mutate HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n"
    received = converse(server.port, [(head, 1)] * 3)
    answers = [json.loads(body) for _, body in responses(received)]
    assert len(answers) == 3
    assert answers[0] == answers[1] == answers[2]
    assert ["x-added", "by the handler"] not in answers[2]
    assert [":path", "/mutate"] in answers[2]


def test_http10_keep_alive_repeats(echo_server: Callable[..., InProcessServer]) -> None:
    server = echo_server()
    head = b"GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    received = converse(server.port, [(head, 1)] * 3)
    assert [r["n"] for r in exchange_reports(received)] == [1, 2, 3]
    assert received.count(b"HTTP/1.0 200") == 3


def test_repeated_file_gets_follow_changes(
    tmp_path: Path, echo_server: Callable[..., InProcessServer]
) -> None:
    """The repeat skips parsing, never the file's freshness (the small-file cache's check)."""
    (tmp_path / "f.txt").write_bytes(b"one")
    server = echo_server(root=str(tmp_path))
    head = b"GET /f.txt HTTP/1.1\r\nHost: a\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        bodies = []
        for content in (b"one", b"two!", b"three"):
            (tmp_path / "f.txt").write_bytes(content)
            sock.sendall(head)
            received = b""
            while not responses(received):
                received += sock.recv(65536)
            bodies.append(responses(received)[0][1])
    assert bodies == [b"one", b"two!", b"three"]
