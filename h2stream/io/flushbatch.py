"""Output of one loop turn's reads, written at the turn's end, connection after connection.

Answering each read with a write at once costs a wake-up of the peer per response: on a
busy worker the client (a load generator, a proxy) sleeps between responses, and each write
wakes it again (on a VM an interprocessor interrupt, a trap to the hypervisor, charged to the
writer). Written back to back after every read of the turn, the responses of many
connections cost one wake-up, and a peer that is already running takes the rest without one.
The delay is one loop turn: the reads that were ready together, handled, and nothing else.

Only a worker with more than one connection defers (one connection's peer gains nothing by
it, and busy polling needs its writes out first), and only output that leaves no work
behind (a response finished inside the read): a streamed body still flushes as it goes.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Deferred(Protocol):
    def flush_deferred(self) -> None:
        """Write what the connection's reads of this turn left queued."""


class FlushBatch:
    """The connections of one worker whose output waits for the end of the loop's turn."""

    __slots__ = ("_due", "_loop")

    def __init__(self) -> None:
        self._due: list[Deferred] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, connection: Deferred) -> None:
        """Flush ``connection`` once this turn's reads are handled (the caller adds each
        connection at most once per turn)."""
        due = self._due
        if not due:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            # Ready callbacks run after every I/O callback of the turn (uvloop and asyncio).
            loop.call_soon(self._flush)
        due.append(connection)

    def _flush(self) -> None:
        due, self._due = self._due, []
        for connection in due:
            connection.flush_deferred()
