"""What the unit tests put where a socket would be: a sink that records the bytes it is given,
and a stand-in for an OpenFile that remembers being closed. The frames a sink recorded are
read back with :mod:`support.frames`."""

from __future__ import annotations

import os

from h2stream.core.frames import DATA_HEADER
from h2stream.core.framing import SinkBase


class RecordingSink(SinkBase):
    """A FrameSink that records the byte stream a socket would have carried (``out``).

    Zero-copy frames are built with the project's own DATA_HEADER, as TransportSink builds
    them, so their bytes are under test too. The sink turns unwritable, as a transport's
    ``pause_writing`` would mid-turn, after every ``pause_every`` writes, or once after the
    ``n`` writes given to :meth:`pause_after`; a test may also set ``writable`` itself.
    """

    def __init__(self, use_sendfile: bool = True, pause_every: int | None = None) -> None:
        self.use_sendfile = use_sendfile
        self.writable = True
        self.pause_every = pause_every
        self.out = bytearray()
        self.sendfile_frames = 0
        self._writes = 0
        self._writes_left: int | None = None

    def pause_after(self, writes: int) -> None:
        self._writes_left = writes

    def _count(self) -> None:
        self._writes += 1
        if self.pause_every and self._writes % self.pause_every == 0:
            self.writable = False
        if self._writes_left is not None:
            self._writes_left -= 1
            if self._writes_left <= 0:
                self.writable = False
                self._writes_left = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out += data
        self._count()

    def send_file_frames(
        self, stream_id: int, fd: int, offset: int, count: int, max_frame: int
    ) -> tuple[int, bool]:
        """What TransportSink sends: frames of at most ``max_frame``, payload read at the
        offset (what sendfile would have sent), a short read zero-filled, and an early stop
        once the sink turns unwritable."""
        done = 0
        while done < count:
            n = min(max_frame, count - done)
            payload = os.pread(fd, n, offset + done)
            self.out += DATA_HEADER.pack(n << 8, 0, stream_id) + payload + bytes(n - len(payload))
            self.sendfile_frames += 1
            done += n
            self._count()
            if len(payload) < n:
                return done, False
            if not self.writable:
                break
        return done, True

    def take(self) -> bytes:
        data = bytes(self.out)
        self.out.clear()
        return data


class Closer:
    """Stands in for an OpenFile: owns the fd, remembers that it was closed."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)
