"""Control-frame floods (CVE-2019-9512/9515/9518, data dribble 9511) against a live server.

Each flood kind is mounted over and over on fresh connections while a well-behaved client
fetches a file on its own connection; every flooding connection must end with
GOAWAY(ENHANCE_YOUR_CALM), the metric must count it, and the server's RSS and fds must stay
where they were. Then the two ways a flood could hide: a peer that never reads the ACKs it
provokes, and legitimate traffic that must not be mistaken for a flood.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.attacks import MIB, Footprint, attack_running, served_during, start
from support.clients import RawConnection
from support.frames import (
    ENHANCE_YOUR_CALM,
    data,
    frame,
    headers,
    ping,
    priority,
    request_block,
    settings,
    window_update,
)

# Well past every default budget (100 or 1000 per second), and a single write.
FLOOD_FRAMES = 5000


def _ping(i: int) -> bytes:
    return ping(i.to_bytes(8, "big"))


def _settings(i: int) -> bytes:
    return settings({0x3: 100 + i % 50})  # MAX_CONCURRENT_STREAMS, a harmless value


def _priority(i: int) -> bytes:
    return priority(1 + 2 * (i % 100), depends_on=0)


def _window_update(i: int) -> bytes:
    return window_update(0, 1)  # one byte at a time: the data-dribble shape


def _empty_data(i: int) -> bytes:
    return data(1)  # on the request stream left open below


def _unknown(i: int) -> bytes:
    return frame(0xFA, 0, 0, b"")  # an extension frame type nobody defined


FLOODS: dict[str, tuple[str, Callable[[int], bytes]]] = {
    "ping": ("ping_flood", _ping),
    "settings": ("settings_flood", _settings),
    "priority": ("priority_flood", _priority),
    "window_update": ("window_update_flood", _window_update),
    "empty_data": ("empty_frame_flood", _empty_data),
    "unknown_frames": ("empty_frame_flood", _unknown),
}


@pytest.mark.parametrize("name", list(FLOODS))
def test_flood_ends_in_enhance_your_calm(
    name: str, server_factory: Callable[..., Any], files_root: Path
) -> None:
    kind, make = FLOODS[name]
    server, metrics = start(server_factory)
    before = metrics.limit_events().get(kind, 0)
    footprint = Footprint(server)
    expected = (files_root / "mib.bin").read_bytes()
    # A request stream left open (no END_STREAM) so empty DATA frames have somewhere to go.
    opening = headers(1, request_block("/hello.txt"), end_stream=False)
    flood = b"".join(make(i) for i in range(FLOOD_FRAMES))
    answers: list[int] = []

    def mount() -> None:
        conn = RawConnection(server.port, initial=opening)
        try:
            conn.send(flood)
            assert conn.until(lambda: conn.goaway is not None, 10), f"{name}: no GOAWAY"
            assert conn.goaway is not None
            answers.append(conn.goaway.error_code)
            # ... and the connection really ends.
            assert conn.wait_closed(10)
        finally:
            conn.close()

    with attack_running(mount) as rounds:
        served_during(server.port, "/mib.bin", expected)
        done = rounds()
    assert answers and set(answers) == {ENHANCE_YOUR_CALM}, answers
    assert metrics.wait_for(kind, before + done) >= before + done
    footprint.assert_bounded()


@pytest.mark.parametrize("company", [False, True], ids=["alone", "beside_another"])
def test_peer_that_never_reads_its_acks(
    server_factory: Callable[..., Any], files_root: Path, company: bool
) -> None:
    """With the ping budget out of the way, PINGs from a peer that never reads: the ACKs
    stop at what one read batch provokes (reading pauses while writing is), nothing queues
    without bound, and the send timeout closes the connection. Beside another connection
    the ACKs of a read are written at the end of the loop's turn (flushbatch.py): the same
    bounds hold."""
    server, metrics = start(
        server_factory, "--max-pings-per-second", "100000000", "--send-timeout", "1"
    )
    footprint = Footprint(server)
    expected = (files_root / "mib.bin").read_bytes()
    other = RawConnection(server.port) if company else None
    conn = RawConnection(server.port, rcvbuf=4096, ack_settings=False)
    try:
        # 64 MiB of PINGs offered, 17 bytes each: without backpressure the server would queue
        # as many bytes of ACKs. The send stalls (bounded) once the server stops reading.
        burst = b"".join(_ping(i) for i in range(1 << 16))  # 1.1 MiB
        sent = 0
        deadline = time.monotonic() + 20
        while sent < 64 * MIB and time.monotonic() < deadline:
            if not conn.send(burst, timeout=2):
                break
            sent += len(burst)
        assert sent < 64 * MIB, "the server kept reading although its ACKs were not read"
        served_during(server.port, "/mib.bin", expected)
        footprint.assert_bounded(fd_slack=4)  # this connection may still be open
        # Unread for longer than --send-timeout: the server aborts the connection.
        assert metrics.wait_for("stalled_connection", 1, timeout=15) >= 1
        assert conn.wait_closed(15), "the stalled connection was not closed"
    finally:
        conn.close()
        if other is not None:
            other.close()
    footprint.assert_bounded()


def test_fast_download_acked_frame_by_frame_is_not_a_flood(
    server_factory: Callable[..., Any], files_root: Path
) -> None:
    """A client that returns window credit for every DATA frame (16 KiB increments) and
    sends a PING now and then is legitimate, however many frames that makes."""
    server, metrics = start(server_factory)
    expected = (files_root / "f100m.bin").read_bytes()[: 8 * MIB]
    conn = RawConnection(server.port, initial=headers(1, request_block("/f100m.bin")))
    received = 0
    try:
        pings = 0
        while received < 8 * MIB:
            before = len(conn.frames)
            assert conn.read(5), f"stalled at {received} bytes"
            credit = b""
            for got in conn.frames[before:]:
                if got.kind == 0 and got.payload:
                    received += len(got.payload)
                    credit += window_update(0, len(got.payload))
                    credit += window_update(1, len(got.payload))
            if received // MIB > pings:  # one PING per MiB
                pings += 1
                credit += _ping(pings)
            conn.send(credit)
            assert conn.goaway is None, f"GOAWAY code {conn.goaway.error_code}"
        assert conn.body(1)[: 8 * MIB] == expected
    finally:
        conn.close()
    events = metrics.limit_events()
    assert not any(kind.endswith("_flood") for kind in events), events
