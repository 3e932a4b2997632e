"""Read-ahead for a file body that flow control holds back: the next frames, read while we wait.

When the peer's window binds (small windows, A-1g-w16), a download is a ping-pong: the peer
returns credit, we read and frame that much, write it, and wait. Reading after the credit
arrived puts a ``preadv`` and the framing between the WINDOW_UPDATE and the first byte out,
while the peer sits idle. A read-ahead does that work after the writes instead, while the
peer is busy reading them, so credit is answered with writes only (as nginx does with its
output buffers).

The buffer is laid out as DATA frames of the connection's frame size, headers in the gaps, so
a grant is sent straight from it: whole frames as read, the frame a grant ends inside cut
short by rewriting its header (the rest of the read-ahead is then dropped, since its next
frame would need a header where payload already went out). What a grant needs beyond the
read-ahead is read afresh before any of the grant is written, so a file that shrinks is
still caught before a frame of that grant goes out.

Memory: a worker has at most :attr:`ReadAheadBudget.MAX` read-aheads; one whose peer has sent
no credit for :attr:`ReadAheadBudget.STALE_SECONDS` is taken back when another stream needs
it, so clients that stop reading cannot keep them.
"""

from __future__ import annotations

import time
from typing import Protocol

from h2stream.core.frames import DATA_HEADER, FLAG_END_STREAM


class ReadAhead:
    """The next ``left`` bytes of a stream's file from ``offset``, framed in ``buf`` at ``pos``."""

    __slots__ = ("buf", "fd", "left", "max_frame", "offset", "pos", "since", "stream_id")

    def __init__(
        self, buf: bytearray, fd: int, offset: int, stream_id: int, max_frame: int, left: int
    ) -> None:
        self.buf = buf
        self.fd = fd
        self.offset = offset
        self.stream_id = stream_id
        self.max_frame = max_frame
        self.left = left
        self.pos = 0
        self.since = time.monotonic()

    def continues(self, stream_id: int, fd: int, offset: int, max_frame: int) -> bool:
        """Whether the next grant of ``stream_id`` (at ``offset``) starts where this does."""
        return (
            offset == self.offset
            and stream_id == self.stream_id
            and fd == self.fd
            and max_frame == self.max_frame
        )

    def take(self, count: int, end_stream: bool) -> int:
        """Frame the next ``count`` bytes (at most :attr:`left`) for sending; returns where
        they end in ``buf`` (they start at the old :attr:`pos`). Every frame but the last is
        full-size, so frame boundaries step by ``max_frame + 9``. The last frame's header is
        rewritten where the grant ends inside it or it ends the body."""
        buf = self.buf
        max_frame = self.max_frame
        pos = self.pos
        left = self.left
        todo = count
        while todo:
            n = min(max_frame, left)
            if n >= todo:
                if n > todo or end_stream:
                    flags = FLAG_END_STREAM if end_stream else 0
                    DATA_HEADER.pack_into(buf, pos, todo << 8, flags, self.stream_id)
                    if n > todo:
                        left = todo  # the rest of this frame has no header slot: dropped
                n = todo
            pos += 9 + n
            left -= n
            todo -= n
        self.pos = pos
        self.left = left
        self.offset += count
        self.since = time.monotonic()
        return pos


class _Holder(Protocol):
    def drop_read_ahead(self) -> None: ...

    @property
    def read_ahead_since(self) -> float: ...


class ReadAheadBudget:
    """How many read-aheads the worker's connections may hold at once (one per worker: its
    server's context makes it, and every connection's writer draws on it)."""

    MAX = 2
    # A read-ahead not drawn on for this long (its peer returns no credit) may be taken back.
    STALE_SECONDS = 0.05

    def __init__(self) -> None:
        self._holders: list[_Holder] = []

    def acquire(self, holder: _Holder) -> bool:
        holders = self._holders
        if len(holders) >= self.MAX:
            stale = time.monotonic() - self.STALE_SECONDS
            oldest = min(holders, key=lambda h: h.read_ahead_since)
            if oldest.read_ahead_since > stale:
                return False
            oldest.drop_read_ahead()  # calls release()
        holders.append(holder)
        return True

    def release(self, holder: _Holder) -> None:
        self._holders.remove(holder)

    @property
    def held(self) -> int:
        return len(self._holders)
