"""Memory a client can grow (issue 19): every table keyed by what a client sends is bounded.

- Metric labels from the error codes of RST_STREAM and GOAWAY frames: codes RFC 9113 does not
  define are counted under one label, so a peer cannot grow ``/metrics`` without end.
- The per-connection cache of decoded header blocks: bounded in bytes, not only in blocks
  (64 blocks of 60 KB were 7.8 MiB per connection).
- The per-worker cache of validated header names: bounded in name length as well as count
  (2,040 unique 30 KB names left 59 MiB behind).

Each runs against a real server process, measured with psutil (RSS) or its metrics listener.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable

import hpack
from support.attacks import start
from support.clients import RawConnection
from support.frames import (
    GOAWAY,
    PREFACE,
    continuation,
    frame,
    headers,
    request_block,
    rst_stream,
    settings,
)
from support.metrics import Scrape, scrape
from support.polling import wait_until
from support.servers import ServerProcess

MIB = 1 << 20
KNOWN_CODES = 14  # NO_ERROR (0x0) .. HTTP_1_1_REQUIRED (0xd)


def _plain_block(path: str, fields: list[tuple[bytes, bytes]]) -> bytes:
    """A request block without Huffman coding or indexing (cheap to decode, big on purpose)."""
    base = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"localhost")]
    encoder = hpack.Encoder()
    every = [*base, (b":path", path.encode()), *fields]
    return encoder.encode([hpack.NeverIndexedHeaderTuple(k, v) for k, v in every], huffman=False)


def _header_frames(stream_id: int, block: bytes) -> bytes:
    size = 16384
    pieces = [block[i : i + size] for i in range(0, len(block), size)]
    if len(pieces) == 1:
        return headers(stream_id, pieces[0])
    out = [headers(stream_id, pieces[0], end_headers=False)]
    for index, piece in enumerate(pieces[1:], start=2):
        out.append(continuation(stream_id, piece, end_headers=index == len(pieces)))
    return b"".join(out)


def test_peer_chosen_error_codes_share_one_label(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server, metrics = start(server_factory)
    base = metrics.base
    conn = RawConnection(server.port)
    try:
        # 300 streams, each reset by the client with a code of its own choosing.
        for stream_id in range(1, 601, 2):
            code = 0x1000 + stream_id
            conn.send(headers(stream_id, request_block("/mib.bin")) + rst_stream(stream_id, code))
        conn.read_for(0.3)
    finally:
        conn.close()
    for n in range(50):  # GOAWAY with 50 more codes
        closing = RawConnection(server.port)
        closing.send(frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0x20000 + n)))
        closing.wait_closed(5)
        closing.close()

    def counted(figures: Scrape) -> bool:
        resets = figures.by_label("h2stream_rst_stream_received_total", "code")
        goaways = figures.by_label("h2stream_goaway_received_total", "code")
        return sum(resets.values()) >= 300 and sum(goaways.values()) >= 50

    # The last connections may still be closing (a loaded machine): their counts come then.
    figures = wait_until(lambda: scrape(base), 10, 0.2, until=counted)
    assert counted(figures)
    resets = figures.by_label("h2stream_rst_stream_received_total", "code")
    goaways = figures.by_label("h2stream_goaway_received_total", "code")
    assert len(resets) <= KNOWN_CODES + 1, sorted(resets)
    assert len(goaways) <= KNOWN_CODES + 1, sorted(goaways)
    assert resets.get("UNKNOWN", 0) >= 300


def test_decoded_header_block_cache_is_bounded_in_bytes(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """8 connections each repeat 64 distinct blocks of 60 KB (a literal never indexed, so
    each block leaves the table as it was: cacheable). Unbounded in bytes that was 7.8 MiB a
    connection; now only small blocks are kept."""
    server = server_factory()
    value = b"v" * 59_000
    blocks = [_plain_block(f"/kib.bin?{n}", [(b"x-big", value)]) for n in range(64)]
    before = server.rss()
    conns = [RawConnection(server.port, connection_window=1 << 30) for _ in range(8)]
    try:
        for conn in conns:
            stream_id = 1
            for block in blocks:
                conn.send(_header_frames(stream_id, block))
                stream_id += 2
            last = stream_id - 2
            assert conn.until(lambda c=conn, s=last: len(c.body(s)) == 1024, 20)
        grown = server.rss() - before
        assert grown < 24 * MIB, f"RSS grew {grown / MIB:.1f} MiB with 8 connections open"
    finally:
        for conn in conns:
            conn.close()


def test_validated_header_names_cache_is_bounded(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """600 requests, each with a unique 30 KB header name: the worker must not keep them."""
    server = server_factory()
    before = server.rss()
    for connection in range(6):
        conn = RawConnection(server.port, connection_window=1 << 30)
        try:
            stream_id = 1
            for n in range(100):
                name = b"x-%06d-" % (connection * 100 + n) + b"n" * 30_000
                conn.send(_header_frames(stream_id, _plain_block("/kib.bin", [(name, b"1")])))
                stream_id += 2
            last = stream_id - 2
            assert conn.until(lambda c=conn, s=last: len(c.body(s)) == 1024, 20)
        finally:
            conn.close()
    grown = server.rss() - before
    assert grown < 10 * MIB, f"RSS grew {grown / MIB:.1f} MiB after the connections closed"


def test_an_idle_connection_costs_little(server_factory: Callable[..., ServerProcess]) -> None:
    """500 idle h2c connections (preface and SETTINGS, nothing asked): the server's RSS per
    connection stays under 14 KiB (it was 18 KiB, 12 of h2's settings deques at 760 bytes)."""
    server = server_factory()
    count = 500

    def idle() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(PREFACE + settings())
        return sock

    warm = [idle() for _ in range(20)]  # the first connections grow pools and arenas
    time.sleep(0.3)
    for sock in warm:
        sock.close()
    time.sleep(0.3)
    before = server.rss()
    socks = [idle() for _ in range(count)]
    try:
        # Every one was taken up as an HTTP/2 session (our SETTINGS came back).
        for sock in socks:
            assert sock.recv(65536)
        time.sleep(0.3)
        per_connection = (server.rss() - before) / count
        print(f"RSS per idle h2c connection: {per_connection / 1024:.1f} KiB")
        assert per_connection < 14 * 1024, f"{per_connection / 1024:.1f} KiB per idle connection"
    finally:
        for sock in socks:
            sock.close()
