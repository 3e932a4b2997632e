"""Too many streams: past SETTINGS_MAX_CONCURRENT_STREAMS a stream is refused (REFUSED_STREAM)
and the connection lives on; past ``--max-requests-per-connection`` the connection is rotated
with GOAWAY(NO_ERROR) naming the last stream it will answer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.attacks import Footprint, attack_running, served_during, start
from support.clients import RawConnection
from support.frames import (
    DATA,
    HEADERS,
    NO_ERROR,
    REFUSED_STREAM,
    headers,
    request_block,
    rst_stream,
)

LIMIT = 4


def test_streams_past_the_limit_are_refused_not_fatal(
    server_factory: Callable[..., Any], files_root: Path
) -> None:
    server, metrics = start(server_factory, "--max-concurrent-streams", str(LIMIT))
    footprint = Footprint(server)
    expected = (files_root / "mib.bin").read_bytes()
    outcomes: list[dict[int, int]] = []

    def mount() -> None:
        # Ignore the advertised limit: open LIMIT + 4 streams on big files. The default 64 KiB
        # stream window is never replenished, so the first LIMIT stay open.
        sids = [2 * i + 1 for i in range(LIMIT + 4)]
        conn = RawConnection(server.port, connection_window=1 << 30)
        try:
            conn.send(b"".join(headers(s, request_block("/f100m.bin")) for s in sids))
            assert conn.until(lambda: len(conn.resets()) >= 4, 10), conn.resets()
            outcomes.append(conn.resets())
            # The connection is alive: free a slot, and a new stream is answered.
            conn.send(rst_stream(sids[0]))
            nxt = sids[-1] + 2
            conn.send(headers(nxt, request_block("/hello.txt")))
            assert conn.until(lambda: DATA in conn.kinds(nxt), 10), "no answer after a refusal"
            assert conn.goaway is None
        finally:
            conn.close()

    with attack_running(mount):
        served_during(server.port, "/mib.bin", expected)
    for resets in outcomes:
        assert resets == {2 * i + 1: REFUSED_STREAM for i in range(LIMIT, LIMIT + 4)}, resets
    assert metrics.wait_for("refused_stream", 4) >= 4
    footprint.assert_bounded()


def test_lifetime_cap_rotates_the_connection(
    server_factory: Callable[..., Any], files_root: Path
) -> None:
    cap = 10
    server, metrics = start(server_factory, "--max-requests-per-connection", str(cap))
    footprint = Footprint(server)
    expected = (files_root / "hello.txt").read_bytes()
    conn = RawConnection(server.port)
    try:
        sids = [2 * i + 1 for i in range(cap + 3)]
        conn.send(b"".join(headers(s, request_block("/hello.txt")) for s in sids))
        assert conn.until(lambda: conn.goaway is not None and len(conn.resets()) >= 3, 10)
        assert conn.goaway is not None
        # GOAWAY(NO_ERROR) names the cap-th stream; everything up to it is answered in full,
        # everything after it is refused, so the client can retry those elsewhere.
        assert conn.goaway.error_code == NO_ERROR
        assert conn.goaway.last_stream_id == sids[cap - 1]
        assert conn.until(lambda: all(conn.body(s) == expected for s in sids[:cap]), 10)
        assert all(HEADERS in conn.kinds(s) for s in sids[:cap])
        assert conn.resets() == dict.fromkeys(sids[cap:], REFUSED_STREAM)
        assert conn.wait_closed(10), "the rotated connection stayed open"
    finally:
        conn.close()
    served_during(server.port, "/hello.txt", expected)
    assert metrics.wait_for("requests_per_connection", 1) >= 1
    footprint.assert_bounded()
