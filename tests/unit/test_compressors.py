"""The worker's zstd context budget: lending, waiting, yielding, and bodies that go on after.

No sockets: bodies emit into a recording sink, as the session's scheduler drives them, on a
real event loop (the budget's reclaim timer runs on it). What must hold: never more contexts
lent than the limit; waiters served in order and woken; a parked or long holder yields when
others wait; and a body that yielded mid-stream still decodes to exactly its input (its output
is then more than one zstd frame, which RFC 8878 allows).
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Callable

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from support.frames import END_STREAM, data_frames
from support.recording import RecordingSink

from h2stream.body import compressors
from h2stream.body.compressors import ContextBudget
from h2stream.body.encoding import CompressedBody, EncodingPolicy, ZstdEncoder
from h2stream.body.sources import MemorySource
from h2stream.core.stats import STATS


def decode_frames(data: bytes) -> bytes:
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
    return reader.read()


def body_of(sink: RecordingSink) -> bytes:
    """The DATA payloads in order; END_STREAM on the last frame only."""
    frames = data_frames(sink.take())
    ends = [bool(flags & END_STREAM) for _, flags, _ in frames]
    assert ends == [False] * (len(frames) - 1) + [True]
    return b"".join(payload for _, _, payload in frames)


class FakeHolder:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log
        self.last_used = 0.0
        self.taken_at = 0.0
        self.suspended_at = 0.0
        self.busy = False  # compresses all the time once it has a context
        self.budget: ContextBudget | None = None

    def granted(self) -> None:
        self.log.append(f"granted {self.name}")
        if self.busy:
            self.last_used = compressors.time.monotonic() + 3600  # never idle

    def suspend(self) -> None:
        self.log.append(f"suspend {self.name}")
        self.suspended_at = compressors.time.monotonic()
        assert self.budget is not None
        self.budget.give_back(self)


def test_budget_lends_up_to_its_limit_then_queues_in_order() -> None:
    async def scenario() -> None:
        log: list[str] = []
        budget = ContextBudget(2)
        a, b, c, d = (FakeHolder(n, log) for n in "abcd")
        before = STATS.limit_events.get("zstd_contexts", 0)
        assert budget.take(a) and budget.take(b)
        assert not budget.take(c) and not budget.take(d)
        assert (budget.in_use, budget.waiting) == (2, 2)
        assert STATS.limit_events["zstd_contexts"] - before == 2
        budget.cancel(c)  # c's stream ended while it waited: d is next
        budget.give_back(a)
        assert log == ["granted d"]
        budget.give_back(a)  # twice is harmless
        assert (budget.in_use, budget.waiting) == (2, 0)
        budget.give_back(b)
        budget.give_back(d)
        assert budget.in_use == 0
        assert budget.take(c)

    asyncio.run(scenario())


def test_parked_holders_yield_to_waiters_busy_ones_after_their_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(compressors, "IDLE_SECONDS", 0.05)
    monkeypatch.setattr(compressors, "TURN_SECONDS", 0.5)

    async def scenario() -> None:
        log: list[str] = []
        budget = ContextBudget(2)
        parked, busy, first, second = (FakeHolder(n, log) for n in ("parked", "busy", "1", "2"))
        for holder in (parked, busy, first, second):
            holder.budget = budget
        busy.busy = first.busy = True  # parked never compresses again
        start = compressors.time.monotonic()
        assert budget.take(parked) and budget.take(busy)
        busy.last_used = start + 3600
        assert not budget.take(first)
        await _until(lambda: len(log) >= 2)
        assert log == ["suspend parked", "granted 1"]
        assert not budget.take(second)
        await _until(lambda: len(log) >= 4)
        # Both busy: the one that has held its context longest yields, once its turn is over.
        assert log == ["suspend parked", "granted 1", "suspend busy", "granted 2"]
        assert busy.suspended_at - start >= compressors.TURN_SECONDS
        assert budget.waiting == 0

    asyncio.run(scenario())


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition() and loop.time() < deadline:
        await asyncio.sleep(0.01)


def test_whole_body_in_one_call_declares_its_size_and_holds_nothing() -> None:
    policy = EncodingPolicy(zstd_contexts=1)
    encoder = policy.encoder("zstd", 5)
    assert encoder.acquire(lambda: None)
    out = encoder.compress(b"hello")
    assert policy.zstd_budget.in_use == 0
    out += encoder.finish()
    assert zstandard.frame_content_size(out) == 5
    assert zstandard.ZstdDecompressor().decompress(out) == b"hello"
    empty = policy.encoder("zstd").finish()
    assert empty.startswith(b"\x28\xb5\x2f\xfd") and decode_frames(empty) == b""


def rows(stream: int, size: int) -> bytes:
    """Half random (hex, about 2:1), so the output outlasts a turn and the other must wait."""
    lines = (
        b"row %d of %d: %s\n" % (i, stream, os.urandom(8).hex().encode())
        for i in range(size // 20 + 1)
    )
    return b"".join(lines)[:size]


def share_one_context(
    sizes: tuple[int, int], budgets: list[int], yields: list[bool]
) -> tuple[list[bytes], list[bytes], list[int], list[bool]]:
    """Two compressed streams driven in turn with one zstd context between them; the holder
    yields after a turn where ``yields`` says so and the other waits. Returns the inputs, the
    DATA payloads, the order bodies were woken in, and which bodies ever had to wait."""
    inputs = [rows(n, size) for n, size in enumerate(sizes)]
    payloads: list[bytes] = []
    woken: list[int] = []
    waited = [False, False]

    async def scenario() -> None:
        policy = EncodingPolicy(zstd_contexts=1)
        encoders = [policy.encoder("zstd") for _ in inputs]
        bodies = [
            CompressedBody(MemorySource(data), encoder)
            for data, encoder in zip(inputs, encoders, strict=True)
        ]
        sinks = [RecordingSink(use_sendfile=False), RecordingSink(use_sendfile=False)]
        for n, body in enumerate(bodies):
            body.set_waker(_append(woken, n))
        turn = 0
        while not all(body.done for body in bodies):
            n = turn % 2
            body, encoder = bodies[n], encoders[n]
            assert isinstance(encoder, ZstdEncoder)
            if not body.done and body.ready:
                allowed = budgets[turn % len(budgets)]
                assert body.emit(sinks[n], 1, allowed, 16384) <= allowed
                waited[n] = waited[n] or encoder.waiting
            assert policy.zstd_budget.in_use <= 1
            if yields[turn % len(yields)] and policy.zstd_budget.waiting and encoder.holding:
                encoder.suspend()
            turn += 1
            assert turn < 10_000
        payloads.extend(body_of(sink) for sink in sinks)
        for body in bodies:
            body.close()
        assert policy.zstd_budget.in_use == 0

    asyncio.run(scenario())
    return inputs, payloads, woken, waited


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.tuples(st.integers(1, 400_000), st.integers(1, 400_000)),
    budgets=st.lists(st.integers(1000, 70_000), min_size=1, max_size=6),
    yields=st.lists(st.booleans(), min_size=1, max_size=12),
)
def test_bodies_sharing_one_context_decode_exactly(
    sizes: tuple[int, int], budgets: list[int], yields: list[bool]
) -> None:
    """Whatever frames the bodies were cut into, each is exactly its input, and a body that
    waited was woken."""
    inputs, payloads, woken, waited = share_one_context(sizes, budgets, yields)
    assert [decode_frames(p) for p in payloads] == inputs
    for n in (0, 1):
        assert not waited[n] or n in woken


def test_a_body_that_yields_mid_stream_is_several_frames() -> None:
    inputs, payloads, woken, waited = share_one_context((300_000, 300_000), [20_000], [True])
    # Each yields after every turn: each waits for the other in turn, and is woken.
    assert waited == [True, True] and woken[0] == 1 and 0 in woken
    # A one-frame decoder stops at the first frame's end: short of the whole body.
    first_frame_only = zstandard.ZstdDecompressor().decompressobj().decompress(payloads[0])
    assert 0 < len(first_frame_only) < len(inputs[0])
    assert decode_frames(payloads[0]) == inputs[0]


def _append(woken: list[int], n: int) -> Callable[[], None]:
    return lambda: woken.append(n)
