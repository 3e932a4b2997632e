"""End-of-turn flushes (io/flushbatch.py): with other connections open, each read's answer
waits for the end of the loop's turn and must then leave, on HTTP/1.1 and HTTP/2 alike."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from support.curl import run_curl
from support.h2load import assert_all_succeeded, h2load
from support.servers import InProcessServer
from test_http1_smuggling import responses

from h2stream.io.flushbatch import FlushBatch

GET = b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n"


def answered(sock: socket.socket, count: int) -> bytes:
    received = b""
    while len(responses(received)) < count:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        received += chunk
    return received


def test_answers_leave_while_other_connections_are_open(
    inprocess_factory: Callable[..., InProcessServer],
) -> None:
    server = inprocess_factory()
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(3)]
    try:
        for sock in idle:  # each an HTTP/1.1 connection kept alive
            sock.sendall(GET)
            answered(sock, 1)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            for _ in range(3):
                sock.sendall(GET)
                assert responses(answered(sock, 1)) == [(200, b"hello, h2stream\n")]
        h2c = run_curl("--http2-prior-knowledge", "-sS", f"{server.url}/hello.txt", check=True)
        assert h2c.stdout == b"hello, h2stream\n"
    finally:
        for sock in idle:
            sock.close()


def test_many_connections_reading_at_once(
    inprocess_factory: Callable[..., InProcessServer],
) -> None:
    server = inprocess_factory()
    url = f"{server.url}/kib.bin"
    assert_all_succeeded(h2load(url, "--h1", "-n", "3000", "-c", "30", "-t", "1"), 3000)
    assert_all_succeeded(h2load(url, "-n", "3000", "-c", "30", "-m", "10", "-t", "1"), 3000)


def test_batch_flushes_each_connection_once_per_turn() -> None:
    flushed: list[str] = []

    class Connection:
        def __init__(self, name: str, batch: FlushBatch) -> None:
            self.name = name
            self.batch = batch

        def flush_deferred(self) -> None:
            flushed.append(self.name)
            if self.name == "a" and flushed.count("a") == 1:
                self.batch.add(self)  # output made while flushing waits for the next turn

    async def turns() -> None:
        batch = FlushBatch()
        batch.add(Connection("a", batch))
        batch.add(Connection("b", batch))
        assert flushed == []  # nothing before the turn ends
        await asyncio.sleep(0)
        assert flushed == ["a", "b"]
        await asyncio.sleep(0)
        assert flushed == ["a", "b", "a"]

    asyncio.run(turns())
