"""HTTP/1.1 answers from memory: a body in memory goes out with its head in one write, and
heads are memoized per field list (h2stream/http1/head.py). A handler that reuses one list
and changes it between responses must never get the previous response's bytes; a body in
memory always has its length, so the connection stays open, on HTTP/1.0 too."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.servers import InProcessServer, loopback_config

from h2stream.core.exchange import Exchange, Handler, Headers
from h2stream.core.framing import BytesBody


class ReusedFields:
    """Answers every request with one field list, changed in place before each response."""

    def __init__(self) -> None:
        self.fields: Headers = [(b"x-count", b"0"), (b"content-length", b"2")]
        self.count = 0

    def __call__(self, exchange: Exchange) -> None:
        self.count += 1
        self.fields[0] = (b"x-count", b"%d" % self.count)
        if self.count == 3:
            self.fields.append((b"x-third", b"yes"))
        exchange.respond(200, self.fields, BytesBody(b"ok"))


def unframed(exchange: Exchange) -> None:
    """In-memory bodies without a content-length field, and bodies where none may go."""
    path = exchange.path
    if path == b"/no-content":
        exchange.respond(204, [], BytesBody(b"ignored"))
    elif path == b"/not-modified":
        exchange.respond(304, [(b"etag", b'"x"')], BytesBody(b"ignored"))
    else:
        exchange.respond(200, [(b"content-type", b"text/plain")], BytesBody(b"hello"))


Serve = Callable[[Handler], InProcessServer]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Start in-process servers answering with a handler of the test's; stopped after it."""
    started: list[InProcessServer] = []

    def start(handler: Handler) -> InProcessServer:
        server = InProcessServer(loopback_config(tmp_path), handler)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


class Responses:
    """Responses read off one socket in order, pipelined ones included."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._data = b""

    def next(self, body_length: int) -> tuple[bytes, dict[bytes, bytes], bytes]:
        """The next status line, fields and ``body_length`` bytes of body."""
        while b"\r\n\r\n" not in self._data:
            self._receive()
        head, _, self._data = self._data.partition(b"\r\n\r\n")
        while len(self._data) < body_length:
            self._receive()
        body, self._data = self._data[:body_length], self._data[body_length:]
        status_line, *lines = head.split(b"\r\n")
        fields = {}
        for line in lines:
            name, _, value = line.partition(b":")
            fields[name.lower()] = value.strip()
        return status_line, fields, body

    def _receive(self) -> None:
        chunk = self._sock.recv(65536)
        assert chunk, f"closed with {self._data!r} unread"
        self._data += chunk


def test_a_field_list_changed_between_responses_is_sent_as_changed(serve: Serve) -> None:
    server = serve(ReusedFields())
    client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        seen = []
        for _ in range(4):
            client.request("GET", "/")
            response = client.getresponse()
            assert response.read() == b"ok"
            seen.append((response.getheader("x-count"), response.getheader("x-third")))
    finally:
        client.close()
    assert seen == [("1", None), ("2", None), ("3", "yes"), ("4", "yes")]


def test_in_memory_body_without_length_gets_one_and_keeps_the_connection(serve: Serve) -> None:
    server = serve(unframed)
    client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for _ in range(2):  # the second request on the same connection
            client.request("GET", "/")
            response = client.getresponse()
            assert response.read() == b"hello"
            assert response.getheader("content-length") == "5"
            assert response.getheader("transfer-encoding") is None
            assert response.getheader("connection") is None
        client.request("HEAD", "/")
        response = client.getresponse()
        assert response.read() == b""
        assert response.getheader("content-length") is None  # nothing was said of a size
    finally:
        client.close()


def test_http_1_0_keep_alive_with_an_in_memory_body(serve: Serve) -> None:
    server = serve(unframed)
    request = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        responses = Responses(sock)
        for _ in range(2):
            sock.sendall(request)
            status, fields, body = responses.next(5)
            assert (status, body) == (b"HTTP/1.0 200 OK", b"hello")
            assert fields[b"content-length"] == b"5"
            assert fields[b"connection"] == b"keep-alive"


def test_no_body_where_the_status_allows_none(serve: Serve) -> None:
    server = serve(unframed)
    requests = (
        b"GET /no-content HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET /not-modified HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(requests)  # pipelined: a stray body byte would shift what follows
        responses = Responses(sock)
        status, fields, _ = responses.next(0)
        assert status == b"HTTP/1.1 204 No Content" and b"content-length" not in fields
        status, fields, _ = responses.next(0)
        assert status == b"HTTP/1.1 304 Not Modified" and b"content-length" not in fields
        status, fields, body = responses.next(5)
        assert (status, body) == (b"HTTP/1.1 200 OK", b"hello")
        assert sock.recv(1) == b""  # nothing after the last, closed as asked
