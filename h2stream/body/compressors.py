"""A worker-wide cap on live zstd contexts, so compressed streams cost bounded memory.

A zstd context allocates about 0.5 MiB (1 MiB with a 128 KiB window). One per stream made a
worker's memory grow with its number of concurrent compressed streams (D-zstd, 40 streams,
128 KiB window: peak RSS 40-44 MiB against 35 for 8 streams). Compression is CPU work on the
worker's one thread, so more contexts than a few buy no throughput: 8 concurrent NDJSON
streams ran 282 requests/s where 40 ran 238 (fewer contexts, warmer caches).

The budget lends up to ``limit`` slots. A stream that finds none waits, unready, and is woken
in turn when one comes back. So that a client that stops reading cannot keep others waiting,
and neither can a long stream, a holder idle for :data:`IDLE_SECONDS` or holding its slot for
:data:`TURN_SECONDS` while others wait is asked to suspend: it ends its zstd frame, gives the
slot back and goes on later in a new frame (RFC 8878 §3: zstd data is one or more frames).

:class:`ZstdContexts` is what a worker owns: the budget and the contexts it lends, kept for the
next stream. The worker's context (runtime) makes one; encoding policies borrow from it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Protocol

from h2stream.core.limits import limit_event

if TYPE_CHECKING:
    import zstandard

# A holder that has compressed nothing for this long is parked (its client is not reading, or
# its producer is quiet); a busy one gets a turn at least this long before it must yield.
IDLE_SECONDS = 0.25
TURN_SECONDS = 1.0

# zstd's window. 64 KiB halves a context against 128 KiB (521 against 953 KiB allocated at
# level 1) for a ratio 0.4% lower on our NDJSON and 5-6% lower on text (Python sources 3.37
# against 3.53, man pages 2.80 against 2.98); the level's default (512 KiB) gains nothing more.
ZSTD_WINDOW_LOG = 16


class Holder(Protocol):
    """What the budget needs of a stream's encoder."""

    last_used: float  # time.monotonic() of its last compressor call
    taken_at: float  # when it got its slot

    def granted(self) -> None:
        """A slot is now this holder's (it waited for it)."""

    def suspend(self) -> None:
        """End the current frame and give the slot back."""


class ContextBudget:
    """Lends at most ``limit`` slots; waiters are served first come, first served."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._holders: dict[Holder, None] = {}  # insertion order: the oldest holder first
        self._waiters: deque[Holder] = deque()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def in_use(self) -> int:
        return len(self._holders)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def take(self, holder: Holder) -> bool:
        """A slot now (True), or a place in the queue: ``holder.granted()`` comes later."""
        if len(self._holders) < self.limit and not self._waiters:
            holder.taken_at = holder.last_used = time.monotonic()
            self._holders[holder] = None
            return True
        self._waiters.append(holder)
        limit_event("zstd_contexts")
        self._arm()
        return False

    def give_back(self, holder: Holder) -> None:
        if holder not in self._holders:
            return  # never granted, or already given back
        del self._holders[holder]
        while self._waiters and len(self._holders) < self.limit:
            nxt = self._waiters.popleft()
            nxt.taken_at = nxt.last_used = time.monotonic()
            self._holders[nxt] = None
            nxt.granted()

    def cancel(self, holder: Holder) -> None:
        """A waiter that no longer needs a slot (its stream ended)."""
        if holder in self._waiters:
            self._waiters.remove(holder)

    def _arm(self) -> None:
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(IDLE_SECONDS, self._reclaim)

    def _reclaim(self) -> None:
        """While streams wait: parked holders yield, then those past their turn."""
        self._timer = None
        now = time.monotonic()
        for idle_only in (True, False):
            for holder in list(self._holders):
                if not self._waiters:
                    return
                due = (
                    now - holder.last_used >= IDLE_SECONDS
                    if idle_only
                    else now - holder.taken_at >= TURN_SECONDS
                )
                if due and holder in self._holders:
                    holder.suspend()
                    limit_event("zstd_context_yields")
        if self._waiters:
            self._arm()


class ZstdContexts:
    """A worker's zstd contexts: at most ``limit`` lent at once, through :attr:`budget`, and
    those given back kept for the next stream.

    Every context lent comes back here, so at most the budget's limit exist per level and none
    is freed and made again under load (that churn fragmented the heap: D-zstd made 164
    contexts for 400 responses with 4 kept). An idle worker drops them (:meth:`release_idle`).
    """

    def __init__(self, limit: int) -> None:
        self.budget = ContextBudget(limit)
        # Kept contexts by compression level (policies of one worker may differ in level).
        self._idle: dict[int, list[zstandard.ZstdCompressor]] = {}
        self._params: dict[int, zstandard.ZstdCompressionParameters] = {}

    def context(self, level: int) -> zstandard.ZstdCompressor:
        """A context for ``level``: a kept one, or a new one. Ask :attr:`budget` first."""
        idle = self._idle.get(level)
        if idle:
            return idle.pop()
        import zstandard  # at the first compressed response (README "Memory")

        params = self._params.get(level)
        if params is None:
            params = zstandard.ZstdCompressionParameters.from_level(
                level, window_log=ZSTD_WINDOW_LOG
            )
            self._params[level] = params
        return zstandard.ZstdCompressor(compression_params=params)

    def context_done(self, level: int, cctx: zstandard.ZstdCompressor) -> None:
        # The next compressobj() or compress() resets the context, finished or not.
        self._idle.setdefault(level, []).append(cctx)

    def release_idle(self) -> None:
        """An idle worker keeps none (the runtime's idle trim calls this)."""
        self._idle.clear()
