"""ReadAhead's framing of grants and the worker's read-ahead budget, without sockets (the
wire-level checks are in tests/integration/test_flow_control.py)."""

from __future__ import annotations

import time

import pytest
from support.frames import END_STREAM, data, data_frames

from h2stream.io.readahead import ReadAhead, ReadAheadBudget

FRAME = 16384


def laid_out(payload: bytes, stream_id: int = 1) -> bytearray:
    """Frames of FRAME bytes, headers in the gaps, as the sink's read fills them."""
    return bytearray(
        b"".join(
            data(stream_id, payload[pos : pos + FRAME]) for pos in range(0, len(payload), FRAME)
        )
    )


def frames_of(buf: bytearray, start: int, end: int) -> list[tuple[int, int, bytes]]:
    """(length, flags, payload) of each frame the sink would write from ``buf[start:end]``."""
    return data_frames(buf[start:end])


PAYLOAD = bytes(range(256)) * 256  # 64 KiB, four frames


@pytest.mark.parametrize(
    ("grants", "left_after"),
    [
        ([FRAME, 2 * FRAME], FRAME),  # whole frames
        ([len(PAYLOAD)], 0),
        ([100], 0),  # cut inside the first frame: the rest is dropped
        ([FRAME, FRAME + 1], 0),  # cut one byte into a frame
        ([3 * FRAME - 1], 0),
    ],
)
def test_grants_are_framed_exactly(grants: list[int], left_after: int) -> None:
    ahead = ReadAhead(
        laid_out(PAYLOAD), fd=3, offset=1000, stream_id=1, max_frame=FRAME, left=len(PAYLOAD)
    )
    sent = b""
    for count in grants:
        start = ahead.pos
        frames = frames_of(ahead.buf, start, ahead.take(count, end_stream=False))
        assert sum(length for length, _, _ in frames) == count
        for length, flags, payload in frames:
            assert len(payload) == length <= FRAME
            assert flags == 0
        sent += b"".join(payload for _, _, payload in frames)
    assert sent == PAYLOAD[: len(sent)]
    assert ahead.left == left_after
    assert ahead.offset == 1000 + len(sent)


def test_the_last_frame_of_a_body_carries_end_stream() -> None:
    ahead = ReadAhead(laid_out(PAYLOAD[:40000]), 3, 0, 1, FRAME, 40000)
    frames = frames_of(ahead.buf, 0, ahead.take(40000, end_stream=True))
    assert [f for _, f, _ in frames] == [0, 0, END_STREAM]
    assert [n for n, _, _ in frames] == [FRAME, FRAME, 40000 - 2 * FRAME]


def test_continues_only_where_the_last_grant_ended() -> None:
    ahead = ReadAhead(laid_out(PAYLOAD), 3, 0, 1, FRAME, len(PAYLOAD))
    ahead.take(FRAME, end_stream=False)
    assert ahead.continues(1, 3, FRAME, FRAME)
    assert not ahead.continues(1, 3, 0, FRAME)  # not where we are
    assert not ahead.continues(3, 3, FRAME, FRAME)  # another stream
    assert not ahead.continues(1, 4, FRAME, FRAME)  # another file
    assert not ahead.continues(1, 3, FRAME, 2 * FRAME)  # the peer changed the frame size


class Holder:
    def __init__(self, budget: ReadAheadBudget) -> None:
        self.budget = budget
        self.read_ahead_since = time.monotonic()
        self.dropped = False

    def drop_read_ahead(self) -> None:
        self.dropped = True
        self.budget.release(self)


def test_budget_caps_holders_and_takes_back_only_stale_ones() -> None:
    budget = ReadAheadBudget()
    holders = [Holder(budget) for _ in range(budget.MAX)]
    assert all(budget.acquire(h) for h in holders)
    late = Holder(budget)
    assert not budget.acquire(late)  # all fresh: no room
    assert budget.held == budget.MAX
    holders[1].read_ahead_since -= 10 * budget.STALE_SECONDS
    assert budget.acquire(late)  # the stale one goes
    assert holders[1].dropped and not holders[0].dropped
    assert budget.held == budget.MAX
    budget.release(late)
    budget.release(holders[0])
    assert budget.held == 0
