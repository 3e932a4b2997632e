"""Nothing held forever (issue 19): requests that never end, bodies that stop, an h2c ``101``
followed by silence and a TLS connection that never sends its preface all end, so 100 such
connections cannot lock a ``--max-connections 100`` server for longer than the timeouts.

Every case runs against a real server process with short timeouts; ``--request-body-timeout
0`` turns the body-idle timeout off, which is how its tests fail without it.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path

from support.clients import (
    RawConnection,
    RawH2Client,
    UploadClient,
    read_until_closed,
    tls_socket,
)
from support.frames import (
    CANCEL,
    GOAWAY,
    NO_ERROR,
    REFUSED_STREAM,
    headers,
    request_block,
)
from support.servers import AppServer, ServerProcess

from h2stream.handlers.app import App, Request, Response

SINK = "/_h2stream/sink"
UPGRADE = (
    b"GET /kib.bin HTTP/1.1\r\nHost: localhost\r\n"
    b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
)


def _open_uploads(conn: RawConnection, count: int) -> list[int]:
    """``count`` POSTs to the sink with HEADERS only: bodies that never come."""
    ids = [1 + 2 * i for i in range(count)]
    conn.send(b"".join(headers(i, request_block(SINK, "POST"), end_stream=False) for i in ids))
    return ids


def test_requests_that_never_end_count_and_time_out(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory("--request-body-timeout", "1")
    conn = RawConnection(server.port)
    try:
        ids = _open_uploads(conn, 200)
        # Past MAX_CONCURRENT_STREAMS (128) they are refused, the connection kept.
        refused = ids[128:]
        assert conn.until(lambda: all(conn.resets().get(i) == REFUSED_STREAM for i in refused), 5)
        started = time.monotonic()
        # Then the 128 that hold a slot are reset once their bodies have stopped for 1 s, and
        # with nothing else alive the connection ends.
        held = ids[:128]
        assert conn.until(lambda: all(conn.resets().get(i) == CANCEL for i in held), 5), (
            f"{sum(conn.resets().get(i) == CANCEL for i in held)} of 128 reset"
        )
        assert conn.wait_closed(5)
        assert conn.goaway is not None and conn.goaway.error_code == NO_ERROR
        assert time.monotonic() - started < 4
    finally:
        conn.close()


def test_answered_requests_that_never_end_are_told_to_stop(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """A GET whose HEADERS lack END_STREAM is answered, then stopped with RST_STREAM(NO_ERROR)
    (RFC 9113 8.1), so it stays open in no table of the server's."""
    server = server_factory()
    conn = RawConnection(server.port, connection_window=1 << 30)
    try:
        count = 1000

        def stopped() -> int:
            return sum(1 for code in conn.resets().values() if code == NO_ERROR)

        # In batches of 100, each once the last is answered: within MAX_CONCURRENT_STREAMS.
        for first in range(0, count, 100):
            batch = range(first, first + 100)
            conn.send(
                b"".join(
                    headers(1 + 2 * i, request_block("/kib.bin"), end_stream=False) for i in batch
                )
            )
            end = first + 100
            assert conn.until(lambda end=end: stopped() == end, 10), f"{stopped()} of {end}"
        assert all(len(conn.body(1 + 2 * i)) == 1024 for i in range(count))
        assert conn.goaway is None
    finally:
        conn.close()


def _upgrade_then_silence(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(UPGRADE)
    assert sock.recv(65536).startswith(b"HTTP/1.1 101")
    return sock


def test_held_connections_do_not_lock_a_full_server(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """100 connections that hold without end (50 uploads whose bodies never come, 50 h2c
    upgrades followed by silence) fill ``--max-connections 100``; within the timeouts a new
    client is served again."""
    server = server_factory(
        "--max-connections", "100", "--request-body-timeout", "1", "--preface-timeout", "1"
    )
    holders: list[RawConnection] = []
    sockets: list[socket.socket] = []
    try:
        for _ in range(50):
            conn = RawConnection(server.port)
            _open_uploads(conn, 1)
            holders.append(conn)
        sockets = [_upgrade_then_silence(server.port) for _ in range(50)]
        started = time.monotonic()
        served_after = None
        while time.monotonic() - started < 8:
            client = RawH2Client(server.port, auto_ack=True)
            try:
                stream_id = client.request("/kib.bin")
                response = client.responses[stream_id]
                if client.until(lambda r=response: r.ended, 1) and response.status == 200:
                    served_after = time.monotonic() - started
                    break
            except OSError:
                pass
            finally:
                client.close()
            time.sleep(0.2)
        assert served_after is not None, "the server stayed full of held connections"
        assert served_after < 5
        # Each held connection was ended by the server.
        for conn in holders:
            assert conn.wait_closed(5)
        for sock in sockets:
            assert read_until_closed(sock, 5).outcome in ("eof", "reset")
    finally:
        for conn in holders:
            conn.close()
        for sock in sockets:
            sock.close()


def test_tls_preface_timeout_covers_the_time_after_the_handshake(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory("--self-signed", "--preface-timeout", "1")
    started = time.monotonic()
    sock = tls_socket(server.port)  # the handshake completes; then nothing is sent
    try:
        outcome = read_until_closed(sock, 6)
        assert outcome.outcome in ("eof", "reset"), "a TLS connection that never spoke was kept"
        assert time.monotonic() - started < 4
        # Our SETTINGS went out, and no GOAWAY was needed: nothing had been asked.
        assert GOAWAY not in {f for f in outcome.received[3:4]}
    finally:
        sock.close()


def _pausing_app() -> App:
    app = App()

    @app.route("/pause", methods=("POST",))
    async def pause(request: Request) -> Response:
        size = len(await request.read())
        await asyncio.sleep(2.5)  # longer than the body timeout: our window stays closed
        async for chunk in request:
            size += len(chunk)
        return Response(body=b"%d" % size)

    return app


def test_a_body_held_back_by_our_own_window_is_not_timed_out(files_root: Path) -> None:
    """The body-idle timeout is the peer's pause, never the application's: an upload whose
    reader stops reading for longer than the timeout waits on our credit and is served."""
    server = AppServer(files_root, _pausing_app(), request_body_timeout=1.0)
    client = UploadClient(server.port)
    try:
        stream_id = client.request("/pause", method="POST", end_stream=False)
        body = b"u" * (300 * 1024)  # several stream windows
        assert client.upload(stream_id, body, timeout=20) == len(body)
        response = client.responses[stream_id]
        assert client.until(lambda: response.ended, 20)
        assert response.reset_code is None and response.status == 200
        assert bytes(response.body) == b"%d" % len(body)
    finally:
        client.close()
        server.stop()
