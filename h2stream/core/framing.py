"""The seam between the session's scheduler and the writer: what a body is and where its
frames go.

A body is asked for one "turn" at a time by the session's scheduler: it may emit DATA frames for
at most ``allowed`` bytes (already the minimum of the stream window, the connection window and
the turn quantum), and reports how many payload bytes it framed. Window accounting is the
caller's job; a body only frames bytes and moves them through the :class:`FrameSink`, which the
I/O layer implements (and recorders in tests).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol

from h2stream.core.frames import DATA_HEADER, FLAG_END_STREAM
from h2stream.core.stats import STATS


class FrameSink(Protocol):
    """Where frames go, in order. Implemented by the I/O layer (and by recorders in tests)."""

    writable: bool
    # Whether this sink can send zero-copy at all (h2c, and not --no-sendfile).
    use_sendfile: bool
    # Set by the scheduler (Session.pump) before each run: the frames are too small for
    # zero-copy to pay (they go by the copy path), and the copy path writes each frame on its
    # own (the window cut the run short) rather than the whole run in one write.
    copy_small_frames: bool
    write_each_frame: bool
    # The run has company: what is read ahead is the next stream's (Session.pump asks for it
    # through read_ahead), not this one's.
    shared_turn: bool

    @property
    def solo_run(self) -> int:
        """How many payload bytes a stream alone on the connection may send per scheduler
        turn (with company, the fairness quantum applies): what this sink writes best."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue bytes behind everything queued before."""

    def copy_file_frames(
        self,
        stream_id: int,
        fd: int,
        offset: int,
        count: int,
        max_frame: int,
        end_stream: bool,
        following: int = 0,
    ) -> int:
        """Read ``count`` bytes of ``fd`` from ``offset`` and queue them as DATA frames of at
        most ``max_frame`` (END_STREAM on the last if ``end_stream``). Returns the bytes read:
        less than ``count`` means the file shrank and nothing was queued. ``following``: how
        many bytes of the body come after this run (a sink may read some of them ahead)."""

    def drop_read_ahead(self, stream_id: int | None = None) -> None:
        """Forget anything read ahead for ``stream_id`` (every stream if None)."""

    def read_ahead(
        self, stream_id: int, fd: int, offset: int, count: int, max_frame: int, following: int
    ) -> None:
        """Read ``fd`` from ``offset`` for ``stream_id``'s next run (about ``count`` bytes,
        never past the ``following`` bytes its body has left) ahead of its credit; a sink
        may decline."""

    def send_file_frames(
        self, stream_id: int, fd: int, offset: int, count: int, max_frame: int
    ) -> tuple[int, bool]:
        """Send ``count`` bytes of ``fd`` from ``offset`` as DATA frames of at most
        ``max_frame`` (no END_STREAM), zero-copy where it can; stop early when the socket
        fills. Returns (payload bytes framed, complete): ``complete`` False means the file
        shrank under a frame whose header had gone, the sink zero-filled that frame to keep
        the connection's framing, and the stream must be reset."""


class SinkBase:
    """What every sink can share: the copy path built on ``write`` alone.

    TransportSink overrides :meth:`copy_file_frames` with a reused-buffer version; recorders in
    tests inherit this one.
    """

    copy_small_frames = False
    write_each_frame = False
    shared_turn = False

    @property
    def solo_run(self) -> int:
        return 256 * 1024

    def read_ahead(
        self, stream_id: int, fd: int, offset: int, count: int, max_frame: int, following: int
    ) -> None:
        pass  # nothing kept: every run is read when it is sent

    def write(self, data: bytes | bytearray | memoryview) -> None:
        raise NotImplementedError

    def copy_file_frames(
        self,
        stream_id: int,
        fd: int,
        offset: int,
        count: int,
        max_frame: int,
        end_stream: bool,
        following: int = 0,
    ) -> int:
        payload = os.pread(fd, count, offset)
        if len(payload) < count:
            return len(payload)
        view = memoryview(payload)
        pos = 0
        while pos < count:
            n = min(max_frame, count - pos)
            flags = FLAG_END_STREAM if end_stream and pos + n == count else 0
            self.write(DATA_HEADER.pack(n << 8, flags, stream_id) + view[pos : pos + n])
            pos += n
        return count

    def drop_read_ahead(self, stream_id: int | None = None) -> None:
        pass  # reads nothing ahead


class Body:
    """Interface of a body source, asked for frames by the session's scheduler."""

    __slots__ = ()
    # "sendfile" or "copy": how this body's bytes leave, for logs and metrics.
    mode = "copy"
    # Trailing header fields sent (with END_STREAM) once the body is done, if any.
    trailers: list[tuple[bytes, bytes]] | None = None
    # Whether it can turn unready by itself and needs set_waker (compressed bodies only), so
    # other responses build no callback.
    wakes_itself = False

    def emit(self, sink: FrameSink, stream_id: int, allowed: int, max_frame: int) -> int:
        """Frame at most ``allowed`` payload bytes; return how many were framed."""
        raise NotImplementedError

    def read_ahead(self, sink: FrameSink, stream_id: int, count: int, max_frame: int) -> None:
        """Have ``sink`` read the next ``count`` bytes ahead, if this body reads a file."""

    @property
    def done(self) -> bool:
        """Everything sent, END_STREAM included (or left to trailers)."""
        raise NotImplementedError

    @property
    def ready(self) -> bool:
        """Has something to send now (False while a producer has not handed over more)."""
        return True

    @property
    def failed(self) -> bool:
        return False

    def set_waker(self, waker: Callable[[], None]) -> None:
        """How a body that turned unready by itself (waiting for a compressor) asks to be
        scheduled again; producer-fed bodies are woken by their producer instead."""

    def close(self) -> None:
        pass


class BytesBody(Body):
    """A body already in memory (error pages, small generated responses)."""

    __slots__ = ("_pos", "_view")

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._pos = 0

    @property
    def done(self) -> bool:
        return self._pos >= len(self._view)

    def emit(self, sink: FrameSink, stream_id: int, allowed: int, max_frame: int) -> int:
        view, pos = self._view, self._pos
        end = min(len(view), pos + allowed)
        write = sink.write
        while pos < end:
            n = min(max_frame, end - pos)
            flags = FLAG_END_STREAM if pos + n == len(view) else 0
            write(DATA_HEADER.pack(n << 8, flags, stream_id))
            write(view[pos : pos + n])
            pos += n
        sent = pos - self._pos
        self._pos = pos
        STATS.body_bytes_copy += sent
        return sent

    def take_rest(self) -> memoryview:
        """All that is left at once, counted as sent: HTTP/1.1 writes it behind the head, with
        no frames to cut and no flow control to wait for."""
        rest = self._view[self._pos :]
        self._pos = len(self._view)
        STATS.body_bytes_copy += len(rest)
        return rest
