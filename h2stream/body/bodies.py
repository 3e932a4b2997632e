"""Response bodies fed by a producer, and file ranges (the session frames them under flow control).

A body is asked for one "turn" at a time by the session's scheduler: it may emit DATA frames for
at most ``allowed`` bytes (already the minimum of the stream window, the connection window and
the turn quantum), and reports how many payload bytes it framed. Window accounting is the
caller's job; a body only frames bytes and moves them through the sink.
"""

from __future__ import annotations

import asyncio
import os

from h2stream.core.frames import DATA_HEADER, FLAG_END_STREAM
from h2stream.core.framing import Body, FrameSink
from h2stream.core.stats import STATS


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


class FdCloser:
    """Owns a bare fd handed to a :class:`FileBody` (an app's open file): closes it once."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


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

    def read_ahead(self, sink: FrameSink, stream_id: int, count: int, max_frame: int) -> None:
        if self.remaining > 0 and not (sink.use_sendfile and not sink.copy_small_frames):
            sink.read_ahead(stream_id, self.fd, self.offset, count, max_frame, self.remaining)

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
