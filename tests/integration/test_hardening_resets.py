"""The reset budget counts resets, whoever sends them (issue 19).

- A client that starts its streams at 1,000,001 (with the per-connection request cap off)
  gets no more reset allowance than one starting at 1: HEADERS + RST_STREAM pairs end in
  GOAWAY(ENHANCE_YOUR_CALM).
- Resets the client provokes from the server ("MadeYouReset": a stream's window pushed past
  2^31-1, DATA on a stream it already half-closed) draw on the same budget.

Every attack runs on a raw connection against a real server process, with a good client
served on another connection meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable

import hpack
import pytest
from support.attacks import Footprint, served_during, start
from support.clients import RawConnection
from support.frames import (
    CANCEL,
    ENHANCE_YOUR_CALM,
    PROTOCOL_ERROR,
    data,
    headers,
    request_block,
    rst_stream,
    window_update,
)
from support.servers import ServerProcess

PAIRS = 3000  # far past the default budget: 256 + half the requests
FIRST = 1_000_001


def _attack(server: ServerProcess, pair: Callable[[int], bytes]) -> RawConnection:
    """Send PAIRS of ``pair(stream_id)`` from stream FIRST on, in writes of 100; read along."""
    conn = RawConnection(server.port)
    for start_at in range(0, PAIRS, 100):
        batch = b"".join(pair(FIRST + 2 * i) for i in range(start_at, start_at + 100))
        if conn.goaway is not None or not conn.send(batch):
            break
        conn.read(0.001)
    conn.until(lambda: conn.goaway is not None, 10)
    return conn


def _rapid_reset(stream_id: int) -> bytes:
    return headers(stream_id, request_block("/mib.bin")) + rst_stream(stream_id, CANCEL)


def _window_overflow(stream_id: int) -> bytes:
    # A download's stream window pushed past 2^31-1: the server resets the stream with
    # FLOW_CONTROL_ERROR (RFC 9113 6.9.1).
    return headers(stream_id, request_block("/mib.bin")) + window_update(stream_id, 2**31 - 1)


def _data_after_end(stream_id: int) -> bytes:
    # DATA on a stream the client half-closed with its HEADERS: STREAM_CLOSED (RFC 9113 5.1).
    return headers(stream_id, request_block("/mib.bin")) + data(stream_id, b"x" * 16)


@pytest.mark.parametrize(
    "name",
    ["rapid_reset_from_a_high_stream_id", "window_overflow", "data_after_end_stream"],
)
def test_resets_end_in_goaway_whoever_sends_them(
    server_factory: Callable[..., ServerProcess], name: str
) -> None:
    pair = {
        "rapid_reset_from_a_high_stream_id": _rapid_reset,
        "window_overflow": _window_overflow,
        "data_after_end_stream": _data_after_end,
    }[name]
    server, metrics = start(server_factory, "--max-requests-per-connection", "0")
    footprint = Footprint(server)
    conn = _attack(server, pair)
    try:
        goaway = conn.goaway
        assert goaway is not None, f"{name}: {PAIRS} pairs and no GOAWAY"
        assert goaway.error_code == ENHANCE_YOUR_CALM
        assert conn.wait_closed(10)
        if name != "rapid_reset_from_a_high_stream_id":
            # The server's own resets were sent, and counted against the budget.
            assert len(conn.resets()) > 256
            assert metrics.limit_events().get("provoked_reset", 0) >= 1
        else:
            assert metrics.limit_events().get("rapid_reset", 0) >= 1
    finally:
        conn.close()
    served_during(server.port, "/kib.bin", b"", count=0)
    footprint.assert_bounded()


def _block(fields: list[tuple[bytes, bytes]]) -> bytes:
    encoder = hpack.Encoder()
    return encoder.encode([hpack.NeverIndexedHeaderTuple(k, v) for k, v in fields])


MALFORMED = {
    "content_length_not_a_number": [(b"content-length", b"12x")],
    "content_length_disagreeing": [(b"content-length", b"3"), (b"content-length", b"4")],
    "content_length_of_5000_digits": [(b"content-length", b"9" * 5000)],
    "authority_with_userinfo": [],
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_requests_are_stream_errors(
    server_factory: Callable[..., ServerProcess], name: str
) -> None:
    """RFC 9113 8.1.1 (content-length) and 8.3.1 (no userinfo in :authority): the request
    is malformed, a stream error, RST_STREAM(PROTOCOL_ERROR); the connection carries on."""
    server = server_factory()
    authority = b"user:pw@localhost" if name == "authority_with_userinfo" else b"localhost"
    fields = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", authority),
        (b":path", b"/_h2stream/sink"),
        *MALFORMED[name],
    ]
    conn = RawConnection(server.port)
    try:
        conn.send(headers(1, _block(fields), end_stream=False))
        assert conn.until(lambda: 1 in conn.resets(), 5), conn.frames
        assert conn.resets()[1] == PROTOCOL_ERROR
        conn.send(headers(3, request_block("/kib.bin")))
        assert conn.until(lambda: len(conn.body(3)) == 1024, 5)
        assert conn.goaway is None
    finally:
        conn.close()
