"""Pull sources: byte producers that a body reads from synchronously, only when a window opens.

A source hands out at most ``n`` bytes per :meth:`Source.read` call, so whatever reads it (an
identity body, a compressor) holds one bounded chunk at a time. Sources never block: a file
span is read with ``os.pread`` (the page cache answers; the copy path of
:class:`~h2stream.body.bodies.FileBody` makes the same bet), memory is sliced, a generator computes.
"""

from __future__ import annotations

import os

from h2stream.core.frames import DATA_HEADER, FLAG_END_STREAM
from h2stream.core.framing import Body, FrameSink
from h2stream.core.stats import STATS

# What one read asks a source for: small enough that a compressor's input plus output per
# stream stay far below its own context, large enough that per-call overhead does not show.
CHUNK = 64 * 1024


class Source:
    """Interface: ``read(n)`` gives 1..n bytes, or b"" once the source is exhausted."""

    __slots__ = ()

    def read(self, n: int) -> bytes | memoryview:
        raise NotImplementedError

    @property
    def at_end(self) -> bool:
        """Known to have nothing more (lets the last frame carry END_STREAM); False when
        only an empty read will tell (open-ended generators)."""
        return False

    @property
    def failed(self) -> bool:
        """The source broke (a file shrank): the body must not end as if it were complete."""
        return False

    def close(self) -> None:
        pass


class MemorySource(Source):
    """Bytes already in memory, handed out as views (no copies)."""

    __slots__ = ("_pos", "_view")

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._view = memoryview(data).cast("B")
        self._pos = 0

    @property
    def at_end(self) -> bool:
        return self._pos >= len(self._view)

    def read(self, n: int) -> memoryview:
        pos = self._pos
        end = min(len(self._view), pos + n)
        self._pos = end
        return self._view[pos:end]


class FileSource(Source):
    """``length`` bytes of an open file from ``offset``, read in bounded chunks.

    ``closer`` owns the fd (an :class:`~h2stream.handlers.files.OpenFile`, or anything with
    ``close()``) and is closed with the source.
    """

    __slots__ = ("_closer", "_failed", "fd", "offset", "remaining")

    def __init__(self, fd: int, offset: int, length: int, closer: object = None) -> None:
        self.fd = fd
        self.offset = offset
        self.remaining: int = length
        self._failed = False
        self._closer = closer

    @property
    def failed(self) -> bool:
        return self._failed

    @property
    def at_end(self) -> bool:
        return self.remaining <= 0

    def read(self, n: int) -> bytes:
        want = min(n, self.remaining)
        if want <= 0:
            return b""
        data = os.pread(self.fd, want, self.offset)
        if len(data) < want:
            # The file shrank under us: stop here, and let the body reset the stream.
            self._failed = True
            self.remaining = 0
            return b""
        self.offset += want
        self.remaining -= want
        return data

    def close(self) -> None:
        closer, self._closer = self._closer, None
        if closer is not None:
            closer.close()  # type: ignore[attr-defined]


class SourceBody(Body):
    """An identity body that frames what a pull source yields, as the window allows.

    The source is read only for bytes that may leave in this turn, so nothing of the body is
    ever held beyond the one chunk being framed.
    """

    __slots__ = ("_ended", "_failed", "_source")

    def __init__(self, source: Source) -> None:
        self._source = source
        self._ended = False
        self._failed = False

    @property
    def done(self) -> bool:
        return self._ended

    @property
    def failed(self) -> bool:
        return self._failed

    def emit(self, sink: FrameSink, stream_id: int, allowed: int, max_frame: int) -> int:
        source = self._source
        write = sink.write
        pack = DATA_HEADER.pack
        sent = 0
        while sent < allowed and sink.writable:
            data = source.read(min(max_frame, allowed - sent))
            n = len(data)
            if not n:
                if source.failed:
                    self._failed = True
                else:
                    write(pack(0, FLAG_END_STREAM, stream_id))
                    self._ended = True
                break
            # END_STREAM rides on the last frame when the source knows its length.
            last = source.at_end
            write(pack(n << 8, FLAG_END_STREAM if last else 0, stream_id))
            write(data)
            sent += n
            if last:
                self._ended = True
                break
        STATS.body_bytes_copy += sent
        return sent

    def close(self) -> None:
        self._source.close()
