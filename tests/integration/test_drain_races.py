"""Connections that meet a drain half-way: accepted just before the listener closed, still in
their TLS handshake or not yet past the preface. A zero-downtime reload hands each of them to
the old worker as it drains (test_reload.py's certificate test met it now and then as an EOF
mid-handshake); they must be served like every connection that was already there.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from support.clients import tls_wrap
from support.frames import (
    ACK,
    DATA,
    GOAWAY,
    NO_ERROR,
    PING,
    PREFACE,
    RST_STREAM,
    Frame,
    headers,
    ping,
    request_block,
    settings,
    take_frames,
)
from support.polling import wait_until
from support.servers import InProcessServer, loopback_config


def _accepted_but_not_made(server: InProcessServer) -> int:
    async def count() -> int:
        return len(server.server.handshaking)

    return int(server.call(count()))


def _request_after_drain_began(server: InProcessServer, sock: socket.socket, tls: bool) -> None:
    """Begin the drain, then (TLS handshake and) preface and one GET: the GET is answered in
    full, and the connection gets a GOAWAY(NO_ERROR) naming its stream. Read raw: our h2
    client refuses the PING that follows a first GOAWAY (RFC 9113 section 6.8 allows it)."""
    drain = asyncio.run_coroutine_threadsafe(server.server.drain(), server.loop)
    assert wait_until(lambda: server.server.draining, 5)
    if tls:
        sock = tls_wrap(sock)
    sock.sendall(PREFACE + settings() + headers(1, request_block("/hello.txt")))
    received = bytearray()
    frames: list[Frame] = []
    sock.settimeout(10)
    while not any(f.kind == GOAWAY and f.last_stream_id == 1 for f in frames):
        chunk = sock.recv(65536)
        assert chunk, f"closed before the final GOAWAY: {[f.kind for f in frames]}"
        received += chunk
        taken, used = take_frames(received)
        del received[:used]
        frames += taken
        for f in taken:
            if f.kind == PING and not f.flags & ACK:
                sock.sendall(ping(f.payload, ack=True))
    on_stream = [f for f in frames if f.stream_id == 1]
    assert not [f for f in on_stream if f.kind == RST_STREAM], "the request was refused"
    body = b"".join(f.payload for f in on_stream if f.kind == DATA)
    assert body == (Path(server.config.root) / "hello.txt").read_bytes()
    assert all(f.error_code == NO_ERROR for f in frames if f.kind == GOAWAY)
    drain.result(15)


def test_a_connection_in_its_tls_handshake_when_the_drain_begins_is_served(
    files_root: Path,
) -> None:
    server = InProcessServer(loopback_config(files_root, self_signed=True))
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        assert wait_until(lambda: _accepted_but_not_made(server) == 1, 5)
        _request_after_drain_began(server, sock, tls=True)
    finally:
        sock.close()
        server.stop()


def test_a_connection_that_sends_its_preface_after_the_drain_began_is_served(
    files_root: Path,
) -> None:
    server = InProcessServer(loopback_config(files_root))
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        assert wait_until(lambda: len(server.server.connections) == 1, 5)
        _request_after_drain_began(server, sock, tls=False)
    finally:
        sock.close()
        server.stop()
