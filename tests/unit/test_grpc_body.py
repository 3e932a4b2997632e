"""MessageBody's high water: the bound a handler's backlog waits at, grown to one turn's size
for a stream the scheduler serves alone (and only up to ``solo_high_water``)."""

from __future__ import annotations

from typing import Any

from support.recording import RecordingSink

from h2stream.handlers.grpc.body import DEFAULT_HIGH_WATER, SOLO_HIGH_WATER, MessageBody

MESSAGE = b"m" * 65536


class Exchange:
    def body_ready(self) -> None:
        pass


def body(**kwargs: Any) -> MessageBody:
    return MessageBody(Exchange(), **kwargs)  # type: ignore[arg-type]


def fill(out: MessageBody) -> int:
    pushed = 0
    while not out.over_high_water:
        out.push(b"\0\0\1\0\0", MESSAGE, True)
        pushed += 1
    return pushed


def test_a_stream_served_in_small_turns_keeps_the_high_water() -> None:
    out = body()
    assert fill(out) == DEFAULT_HIGH_WATER // (len(MESSAGE) + 5) + 1
    sink = RecordingSink()
    out.emit(sink, 1, 65536, 16384)  # the fairness quantum: other streams share the turn
    fill(out)
    assert out._backlog < DEFAULT_HIGH_WATER + len(MESSAGE) + 5


def test_a_stream_served_alone_queues_one_turn_and_no_more() -> None:
    out = body()
    fill(out)
    sink = RecordingSink()
    out.emit(sink, 1, 4 * SOLO_HIGH_WATER, 16384)  # a solo turn with windows to spare
    fill(out)
    assert SOLO_HIGH_WATER <= out._backlog < SOLO_HIGH_WATER + len(MESSAGE) + 5
    fixed = body(solo_high_water=DEFAULT_HIGH_WATER)
    fill(fixed)
    fixed.emit(sink, 1, 4 * SOLO_HIGH_WATER, 16384)
    fill(fixed)
    assert fixed._backlog < DEFAULT_HIGH_WATER + len(MESSAGE) + 5
