"""Response body sources and the frame writers that move them under flow control.

A body is asked for one "turn" at a time by the session's scheduler: it may emit DATA frames for
at most ``allowed`` bytes (already the minimum of the stream window, the connection window and
the turn quantum), and reports how many payload bytes it framed. Window accounting is the
caller's job; a body only frames bytes and moves them through the sink.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import Callable
from typing import Protocol

from .stats import STATS

# A DATA frame header: 24-bit length and 8-bit type (0 = DATA) packed as one 32-bit word,
# then flags, then the stream id.
DATA_HEADER = struct.Struct(">IBI")
FLAG_END_STREAM = 0x1


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

    @property
    def solo_run(self) -> int:
        return 256 * 1024

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


class ProducerHandover:
    """The handover both producer-fed bodies share: one chunk in flight, and the future its
    producer awaits until the chunk's bytes are framed (see :class:`ChunkBody`). The fields
    live in each subclass's slots."""

    _waiter: asyncio.Future[None] | None
    _end: bool
    trailers: list[tuple[bytes, bytes]] | None

    def _take(
        self,
        busy: bool,
        waiter: asyncio.Future[None],
        end: bool,
        trailers: list[tuple[bytes, bytes]] | None,
    ) -> None:
        if busy:
            raise RuntimeError("send() while the previous chunk is still in flight")
        self._waiter = waiter
        self._end = end
        self.trailers = trailers

    def _resolve(self, error: BaseException | None) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)


class ChunkBody(ProducerHandover, Body):
    """Chunks handed over one at a time by a producer that awaits each chunk's framing.

    The producer's await on :meth:`put` is the producer pause: its future resolves only when
    the last byte of the chunk has been framed under the peer's windows, so at most one chunk
    per stream is ever held.
    """

    __slots__ = ("_end", "_ended", "_pos", "_view", "_waiter", "trailers")

    def __init__(self) -> None:
        self._view: memoryview | None = None
        self._pos = 0
        self._waiter: asyncio.Future[None] | None = None
        self._end = False
        self._ended = False
        self.trailers = None

    @property
    def done(self) -> bool:
        return self._ended

    @property
    def ready(self) -> bool:
        return self._view is not None

    def put(
        self,
        data: bytes | bytearray | memoryview,
        waiter: asyncio.Future[None],
        end: bool,
        trailers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self._take(self._view is not None or self._ended, waiter, end, trailers)
        self._view = memoryview(data).cast("B")
        self._pos = 0

    def emit(self, sink: FrameSink, stream_id: int, allowed: int, max_frame: int) -> int:
        view = self._view
        if view is None:
            return 0
        pos = self._pos
        size = len(view)
        end = min(size, pos + allowed)
        write = sink.write
        # END_STREAM rides on the last DATA frame unless trailers will carry it.
        end_flag = FLAG_END_STREAM if self._end and self.trailers is None else 0
        while pos < end:
            n = min(max_frame, end - pos)
            write(DATA_HEADER.pack(n << 8, end_flag if pos + n == size else 0, stream_id))
            write(view[pos : pos + n])
            pos += n
        if size == 0 and end_flag:
            write(DATA_HEADER.pack(0, end_flag, stream_id))  # an empty final chunk
        sent = pos - self._pos
        self._pos = pos
        STATS.body_bytes_copy += sent
        if pos >= size:
            self._view = None
            self._ended = self._end
            self._resolve(None)
        return sent

    def close(self) -> None:
        self._view = None
        self._resolve(ConnectionResetError("stream closed before the chunk was sent"))


class FileBody(Body):
    """``length`` bytes of an open file from ``offset``: zero-copy where the sink allows it.

    The last frame always goes through the copy path, because only a frame whose payload was
    read before its header was written can carry END_STREAM safely: a file that shrinks under
    a zero-copy frame is detected too late to avoid a zero-filled frame, so the stream is then
    reset instead of ending with a body that looks complete.
    """

    __slots__ = ("_closer", "_failed", "fd", "mode", "offset", "remaining")

    def __init__(self, fd: int, offset: int, length: int, closer: object = None) -> None:
        self.mode = "copy"
        self.fd = fd
        self.offset = offset
        self.remaining = length
        self._failed = False
        # Whatever owns the fd (an OpenFile); closed with the body.
        self._closer = closer

    @property
    def done(self) -> bool:
        return self.remaining == 0

    @property
    def failed(self) -> bool:
        return self._failed

    def close(self) -> None:
        closer, self._closer = self._closer, None
        if closer is not None:
            closer.close()  # type: ignore[attr-defined]

    def emit(self, sink: FrameSink, stream_id: int, allowed: int, max_frame: int) -> int:
        n = min(allowed, self.remaining)
        if n <= 0:
            return 0
        sent = 0
        if sink.use_sendfile and not sink.copy_small_frames:
            # Zero-copy for every frame but the body's last (see the class docstring).
            run = n - min(max_frame, n) if n == self.remaining else n
            if run > 0:
                self.mode = "sendfile"
                sent, complete = sink.send_file_frames(
                    stream_id, self.fd, self.offset, run, max_frame
                )
                self.offset += sent
                self.remaining -= sent
                if not complete:
                    self._failed = True
                    return sent
                if sent < run or not sink.writable:
                    return sent
        return sent + self._emit_copy(sink, stream_id, n - sent, max_frame)

    def _emit_copy(self, sink: FrameSink, stream_id: int, allowed: int, max_frame: int) -> int:
        """Read, then frame: the path that may carry END_STREAM."""
        if allowed <= 0:
            return 0  # a zero-copy run used the whole turn: no empty DATA frame
        end_stream = allowed == self.remaining
        following = self.remaining - allowed
        got = sink.copy_file_frames(
            stream_id, self.fd, self.offset, allowed, max_frame, end_stream, following
        )
        if got < allowed:
            # The file shrank: nothing of this run was sent; reset instead.
            self._failed = True
            return 0
        STATS.body_bytes_copy += got
        self.offset += got
        self.remaining -= got
        return got
