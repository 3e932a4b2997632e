"""Rapid reset (CVE-2023-44487): HEADERS immediately followed by RST_STREAM, by the thousand.

A connection may reset half the streams it opens plus ``--reset-budget``; past that it gets
GOAWAY(ENHANCE_YOUR_CALM). Requests reset in the same read batch that opened them are never
dispatched at all (no file opened, no handler run), which the in-process test shows with the
server's own counters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.attacks import Footprint, attack_running, served_during, start
from support.clients import RawConnection
from support.frames import CANCEL, ENHANCE_YOUR_CALM, headers, ping, request_block, rst_stream

from h2stream.core.stats import STATS

PAIRS = 2000  # far past the default budget of 256 + half the requests


def _pair(stream_id: int) -> bytes:
    return headers(stream_id, request_block("/mib.bin")) + rst_stream(stream_id, CANCEL)


def test_rapid_reset_ends_in_goaway(server_factory: Callable[..., Any], files_root: Path) -> None:
    server, metrics = start(server_factory)
    before = metrics.limit_events().get("rapid_reset", 0)
    footprint = Footprint(server)
    expected = (files_root / "mib.bin").read_bytes()
    batched = b"".join(_pair(2 * i + 1) for i in range(PAIRS))
    answers: list[tuple[str, int, int]] = []
    shapes = ["batched", "paced"]

    def mount() -> None:
        shape = shapes[len(answers) % 2]
        conn = RawConnection(server.port)
        try:
            if shape == "batched":
                # The whole attack in one write: each request is reset in the read that opens it.
                conn.send(batched)
            else:
                # One pair per write, so requests are dispatched (a file opened, headers sent)
                # before their reset arrives: the costly shape of the attack.
                for i in range(PAIRS):
                    if conn.goaway is not None or not conn.send(_pair(2 * i + 1)):
                        break
                    if i % 50 == 0:
                        conn.read(0.001)
            assert conn.until(lambda: conn.goaway is not None, 10), f"{shape}: no GOAWAY"
            assert conn.goaway is not None
            answers.append((shape, conn.goaway.error_code, conn.goaway.last_stream_id))
            assert conn.wait_closed(10)
        finally:
            conn.close()

    with attack_running(mount) as rounds:
        served_during(server.port, "/mib.bin", expected)
        while rounds() < 2:  # both shapes, still bounded by attack_running's deadline
            time.sleep(0.05)
        done = rounds()
    assert {code for _, code, _ in answers} == {ENHANCE_YOUR_CALM}, answers
    # The budget: resets > 256 + opened / 2 trips at about the 513th pair, never before it.
    assert all(last >= 2 * 512 - 1 for _, _, last in answers), answers
    assert metrics.wait_for("rapid_reset", before + done) >= before + done
    footprint.assert_bounded()


def test_requests_reset_in_the_same_batch_are_never_dispatched(
    inprocess_factory: Callable[..., Any],
) -> None:
    server = inprocess_factory(reset_budget=100_000)
    streams_before = STATS.streams_total
    conn = RawConnection(server.port)
    try:
        # 200 pairs, about 12 KB: one loopback read. A PING behind them: its ACK means the
        # server has processed everything before it.
        conn.send(b"".join(_pair(2 * i + 1) for i in range(200)) + ping(b"fenceACK"))
        assert conn.until(lambda: any(f.kind == 6 and f.flags & 1 for f in conn.frames))
        dispatched = STATS.streams_total - streams_before
        # At most one pair can straddle two reads (HEADERS in one, its RST_STREAM in the next).
        assert dispatched <= 1, f"{dispatched} reset requests were dispatched"
        assert conn.goaway is None  # within the (raised) budget: no GOAWAY
    finally:
        conn.close()


def test_legitimate_cancellations_stay_within_budget(
    server_factory: Callable[..., Any],
) -> None:
    """A client that cancels every request it makes, 128 at a time (a browser leaving a
    page twice), stays within the budget: 256 resets are always allowed."""
    server, metrics = start(server_factory)
    conn = RawConnection(server.port)
    try:
        sids = [2 * i + 1 for i in range(256)]
        for batch in (sids[:128], sids[128:]):
            conn.send(b"".join(headers(s, request_block("/f100m.bin")) for s in batch))
            conn.send(b"".join(rst_stream(s) for s in batch))
        conn.send(ping(b"fenceACK"))
        assert conn.until(lambda: any(f.kind == 6 and f.flags & 1 for f in conn.frames))
        assert conn.goaway is None
        assert "rapid_reset" not in metrics.limit_events()
    finally:
        conn.close()
