"""The response body of a gRPC call: messages queued by the handler, framed many per turn.

A handler's ``send`` queues the message (prefix and payload, no copy) and goes on without
suspending while less than ``high_water`` bytes wait to be framed, so a run of small messages
shares one scheduler turn and one write, with no Future or Task per message. Past
``high_water`` it waits (one Future for the whole backlog) until the session has framed the
backlog under the peer's windows: a slow reader stops the handler, and a stream never holds
more than ``high_water`` plus one message. A stream that the scheduler serves alone, with the
windows for it, is given larger turns (up to 1 MiB, see Session.pump): its high water grows to
what one turn takes, up to ``solo_high_water``, so that each turn is one large write rather
than four of 256 KiB with the handler woken between them.
"""

from __future__ import annotations

import asyncio
import collections

from h2stream.core.exchange import Exchange
from h2stream.core.frames import DATA_HEADER
from h2stream.core.framing import Body, FrameSink
from h2stream.core.stats import STATS

DEFAULT_HIGH_WATER = 256 * 1024
# 64 KiB messages to h2load, one stream, 1 GiB (3 interleaved pairs of runs, medians, on a
# shared 2-core box, 2026-12-06): 256 KiB 24.9k messages/s and 14.7 us of server CPU each,
# 1 MiB 27.5k and 11.6 us.
SOLO_HIGH_WATER = 1024 * 1024


class MessageBody(Body):
    """Queued message pieces; once finished, the trailers end the stream."""

    __slots__ = (
        "_backlog",
        "_closed",
        "_ended",
        "_exchange",
        "_finished",
        "_high",
        "_items",
        "_solo_high",
        "_waiter",
        "bytes_out",
        "messages_out",
        "trailers",
    )

    def __init__(
        self,
        exchange: Exchange,
        high_water: int = DEFAULT_HIGH_WATER,
        solo_high_water: int = SOLO_HIGH_WATER,
    ) -> None:
        self._exchange = exchange
        self._items: collections.deque[bytes | memoryview] = collections.deque()
        self._backlog = 0
        self._high = high_water
        self._solo_high = solo_high_water
        self._finished = False
        self._ended = False
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None
        self.trailers = None
        self.messages_out = 0
        self.bytes_out = 0

    @property
    def done(self) -> bool:
        return self._ended

    @property
    def ready(self) -> bool:
        return bool(self._items) or (self._finished and not self._ended)

    @property
    def over_high_water(self) -> bool:
        return self._backlog >= self._high

    def push(self, prefix: bytes, payload: bytes, started: bool) -> None:
        """Queue one message; ``started``: the response headers went out (the session has
        this body), so an idle body must be scheduled again."""
        if self._closed:
            raise ConnectionResetError("stream closed")
        items = self._items
        idle = not items
        items.append(prefix)
        if payload:
            items.append(payload)
        self._backlog += len(prefix) + len(payload)
        self.messages_out += 1
        self.bytes_out += len(payload)
        if idle and started:
            self._exchange.body_ready()

    def finish(self, trailers: list[tuple[bytes, bytes]], started: bool) -> None:
        """No more messages: the trailers follow the backlog."""
        if self._finished or self._closed:
            return
        self._finished = True
        self.trailers = trailers
        if started and not self._items:
            self._exchange.body_ready()

    def drained(self) -> asyncio.Future[None]:
        """Resolved once the backlog is under high water again (or the stream is gone)."""
        waiter = self._waiter
        if waiter is None:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
        return waiter

    def emit(self, sink: FrameSink, stream_id: int, allowed: int, max_frame: int) -> int:
        if allowed > self._high < self._solo_high:
            # Served alone with the windows for a larger turn: queue what one turn takes.
            self._high = min(allowed, self._solo_high)
        items = self._items
        write = sink.write
        sent = 0
        backlog = self._backlog
        while items and sent < allowed:
            n = min(allowed - sent, max_frame, backlog)
            write(DATA_HEADER.pack(n << 8, 0, stream_id))
            left = n
            while left:
                piece = items[0]
                size = len(piece)
                if size <= left:
                    items.popleft()
                    write(piece)
                    left -= size
                else:
                    view = memoryview(piece)
                    write(view[:left])
                    items[0] = view[left:]
                    left = 0
            sent += n
            backlog -= n
        self._backlog = backlog
        if not items and self._finished:
            self._ended = True
        if self._waiter is not None and backlog < self._high:
            self._resolve(None)
        STATS.body_bytes_copy += sent
        return sent

    def _resolve(self, error: BaseException | None) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)

    def close(self) -> None:
        self._closed = True
        self._items.clear()
        self._backlog = 0
        self._resolve(ConnectionResetError("stream closed before the messages were sent"))
