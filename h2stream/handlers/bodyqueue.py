"""Request body chunks held for a reader, each chunk's window credit given back only when the
reader takes it: the one place that ties request-body memory to flow control for the app API
and ASGI alike.

At most one stream window of data can wait here (the peer may not send more), so a slow reader
slows the client instead of filling memory. Chunks that will never be read hand their credit
back at once, or every aborted upload would shrink the connection window for good.
"""

from __future__ import annotations

import collections

from h2stream.core.exchange import Exchange


class BodyQueue:
    """Chunks queued for one request's reader, within ``limit`` bytes in all."""

    __slots__ = ("_chunks", "_exchange", "_limit", "buffered", "closed", "received")

    def __init__(self, exchange: Exchange, limit: int) -> None:
        self._exchange = exchange
        self._limit = limit
        self._chunks: collections.deque[tuple[bytes, int]] = collections.deque()
        self.received = 0
        # Bytes received but not yet taken by the reader (what the server holds).
        self.buffered = 0
        # Nothing more will be read (an error, a disconnect): arrivals give their credit back.
        self.closed = False

    def __len__(self) -> int:
        return len(self._chunks)

    def push(self, data: bytes, credit: int) -> bool:
        """Queue ``data`` (``credit``: its flow-controlled length, padding included); False
        when it takes the body over the limit (its credit is given back, nothing queued)."""
        if self.closed:
            self._exchange.consumed(credit)
            return True
        self.received += len(data)
        if self.received > self._limit:
            self._exchange.consumed(credit)
            return False
        self._chunks.append((data, credit))
        self.buffered += len(data)
        return True

    def take(self) -> bytes | None:
        """The next chunk, its credit given back; None when none is queued."""
        if not self._chunks:
            return None
        data, credit = self._chunks.popleft()
        self.buffered -= len(data)
        self._exchange.consumed(credit)
        return data

    def discard(self) -> None:
        """Nothing more will be read: drop what is queued and give its credit back."""
        self.closed = True
        credit = sum(length for _, length in self._chunks)
        self._chunks.clear()
        self.buffered = 0
        if credit:
            self._exchange.consumed(credit)
