"""The one writer of a connection: queued bytes through the transport, file payloads by sendfile.

Order is the invariant. Bytes are queued here and flushed to the transport before any
zero-copy frame; a zero-copy frame goes to the kernel directly (header by ``send(MSG_MORE)`` on
a duplicate of the socket, payload by ``os.sendfile``) only while the transport's buffer is
empty, which uvloop guarantees means everything before it is already in the kernel. When the
socket fills mid-frame, the rest of that frame is read into memory and handed to the transport,
whose ``pause_writing`` then stops the scheduler until it has drained.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys

from . import memory
from .bodies import DATA_HEADER, SinkBase
from .stats import STATS

# Queued bytes are handed to the transport once they reach this size (by default: TLS uses
# less), so a turn never holds more than about this much before the transport decides
# whether to pause.
FLUSH_AT = 256 * 1024

# A stream alone on its connection sends runs of up to this many bytes per turn. Larger runs
# are fewer turns and fewer, larger writes. h2c A-1g (one 1 GiB download, 16 KiB frames, so
# the copy path), 5 interleaved rounds, 2026-11-26: 128 KiB 1,669 MB/s (server CPU 0.55 s per
# GiB), 256 KiB 1,864 (0.48 s), 512 KiB 1,987 (0.39 s), 1 MiB 2,243 (0.36 s). TLS keeps 256
# KiB: its layer encrypts each write whole into memory; so does h2c while the worker's large
# buffers are all in use (CopyBuffers.MAX_LARGE).
SOLO_RUN = 1 << 20
SHORT_SOLO_RUN = 256 * 1024

_MSG_MORE = getattr(socket, "MSG_MORE", 0)
# Copy runs up to this size go as one fresh bytes joined with queued output; larger ones are
# read into a pooled buffer laid out as frames: up to 256 KiB of 16 KiB frames (the fairness
# quantum's runs, TLS) or a whole solo run (every frame at least 16 KiB, RFC 9113 §6.5.2).
_SMALL_COPY = 16384
_COPY_BUF = 256 * 1024 + 9 * 16
_LARGE_COPY_BUF = SOLO_RUN + 9 * (SOLO_RUN // 16384)


class CopyBuffers:
    """The worker's copy-path buffers, shared by its connections.

    A run's buffer is busy only until the transport has taken the bytes: almost always by
    the end of the write, when it goes straight back here for the next run of any
    connection. A connection whose transport kept a view of it (the socket was full) holds it
    until that drained. So the worker needs about one buffer plus one per connection that is
    backlogged right now, not 256 KiB for every connection (C-many: 10 connections).
    """

    KEEP = 2  # free buffers kept for the next runs; more are left to the allocator
    # Buffers for solo runs, in the transport or free, per worker: one download's run in the
    # transport and the next being filled. Past that, solo runs shrink to 256 KiB, so many
    # slow clients with one download each cost 256 KiB per backlogged connection, not 1 MiB.
    MAX_LARGE = 2

    def __init__(self) -> None:
        self._free: list[bytearray] = []
        self._free_large: list[bytearray] = []
        self._large_out = 0  # large buffers taken and not given back or forgotten

    def large_available(self) -> bool:
        return bool(self._free_large) or self._large_out < self.MAX_LARGE

    def take(self, size: int) -> bytearray:
        if size <= _COPY_BUF:
            return self._free.pop() if self._free else bytearray(_COPY_BUF)
        if size <= _LARGE_COPY_BUF:
            self._large_out += 1
            return self._free_large.pop() if self._free_large else bytearray(_LARGE_COPY_BUF)
        return bytearray(size)

    def give_back(self, buf: bytearray) -> None:
        if len(buf) == _COPY_BUF:
            if len(self._free) < self.KEEP:
                self._free.append(buf)
        elif len(buf) == _LARGE_COPY_BUF:
            self._large_out -= 1
            if len(self._free_large) + self._large_out < self.MAX_LARGE:
                self._free_large.append(buf)

    def forget(self, buf: bytearray) -> None:
        """A buffer left to a closing transport: it never comes back."""
        if len(buf) == _LARGE_COPY_BUF:
            self._large_out -= 1

    def release_idle(self) -> None:
        """An idle worker keeps none (memory.py)."""
        self._free.clear()
        self._free_large.clear()


# One per process, like STATS: a worker's connections all run on its one thread.
COPY_BUFFERS = CopyBuffers()
memory.release_when_idle(COPY_BUFFERS)


class _Detached:
    """Stands in for the transport once the connection is lost: what is still written
    (a scheduled turn that runs after the loss) has nowhere to go."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def abort(self) -> None:
        pass


DETACHED: asyncio.Transport = _Detached()  # type: ignore[assignment]


class TransportSink(SinkBase):
    """Implements :class:`h2stream.bodies.FrameSink` on an asyncio/uvloop transport."""

    __slots__ = (
        "_held",
        "_parts",
        "_pending",
        "_sock",
        "_sock_fd",
        "_solo_run",
        "_transport",
        "copy_small_frames",
        "flush_at",
        "use_sendfile",
        "writable",
        "write_each_frame",
    )

    def __init__(
        self,
        transport: asyncio.Transport,
        raw_socket: socket.socket | None,
        flush_at: int = FLUSH_AT,
        solo_run: int = SOLO_RUN,
    ) -> None:
        self._transport = transport
        self._parts: list[bytes | bytearray | memoryview] = []
        self._pending = 0
        # Copy buffers the transport may still hold a view of (see CopyBuffers).
        self._held: list[bytearray] = []
        # A duplicate of the transport's socket, for send(MSG_MORE) and sendfile only; it is
        # never registered with the loop.
        self._sock = raw_socket
        self._sock_fd = raw_socket.fileno() if raw_socket is not None else -1
        self.use_sendfile = raw_socket is not None
        self.copy_small_frames = False
        self.write_each_frame = False
        self.writable = True
        # Queued bytes go to the transport once they reach this size.
        self.flush_at = flush_at
        self._solo_run = solo_run

    @property
    def solo_run(self) -> int:
        """SOLO_RUN while the worker has a large copy buffer to spare, else 256 KiB."""
        if self._solo_run > SHORT_SOLO_RUN and not COPY_BUFFERS.large_available():
            return SHORT_SOLO_RUN
        return self._solo_run

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._parts.append(data)
        self._pending += len(data)
        if self._pending >= self.flush_at:
            self.flush()

    def flush(self) -> None:
        parts = self._parts
        if not parts:
            return
        self._parts = []
        self._pending = 0
        if len(parts) == 1:
            self._transport.write(parts[0])
        else:
            self._transport.write(b"".join(parts))

    def send_file_frames(
        self, stream_id: int, fd: int, offset: int, count: int, max_frame: int
    ) -> tuple[int, bool]:
        self.flush()
        transport = self._transport
        sock = self._sock
        if not self.writable or transport.get_write_buffer_size() or sock is None:
            # Not our turn to touch the kernel: frame one through the transport.
            n = min(max_frame, count)
            got = self._copy_rest(DATA_HEADER.pack(n << 8, 0, stream_id), fd, offset, n)
            return n, got == n
        send = sock.send
        sock_fd = self._sock_fd
        pack = DATA_HEADER.pack
        sendfile = os.sendfile
        done = 0
        zero_copy = 0
        try:
            while done < count:
                n = min(max_frame, count - done)
                header = pack(n << 8, 0, stream_id)
                try:
                    sent_header = send(header, _MSG_MORE)
                except BlockingIOError:
                    # Socket full: this frame goes through the transport, whose buffer
                    # then pauses us until the kernel takes it (resume_writing).
                    sent_header = 0
                except ConnectionError:
                    return self._peer_gone(done)
                if sent_header < 9:
                    got = self._copy_rest(header[sent_header:], fd, offset + done, n)
                    return done + n, got == n
                try:
                    sent = sendfile(sock_fd, fd, offset + done, n)
                except BlockingIOError:
                    sent = 0
                except ConnectionError:
                    return self._peer_gone(done)
                except OSError:
                    # The file cannot be read (EIO from a failing disk...). The header is out
                    # and promised n bytes: zero-fill them to keep the framing; the caller
                    # resets the stream (issue 6).
                    self._transport.write(bytes(n))
                    return done + n, False
                zero_copy += sent
                if sent < n:
                    # Socket full mid-frame (or the file ended early): finish this frame
                    # through the transport, which then pauses us until it drains.
                    got = self._copy_rest(b"", fd, offset + done + sent, n - sent)
                    return done + n, got == n - sent
                done += n
        finally:
            STATS.body_bytes_sendfile += zero_copy
        return done, True

    def copy_file_frames(
        self, stream_id: int, fd: int, offset: int, count: int, max_frame: int, end_stream: bool
    ) -> int:
        pack = DATA_HEADER.pack
        if count <= _SMALL_COPY:
            # One small frame: a fresh bytes joins the queued HEADERS in the next write.
            try:
                payload = os.pread(fd, count, offset)
            except OSError:
                return 0  # a failing read: nothing framed yet, the caller resets the stream
            if len(payload) < count:
                return len(payload)
            self.write(pack(count << 8, 1 if end_stream else 0, stream_id) + payload)
            return count
        # Larger runs: one preadv straight into a shared buffer laid out as frames, headers in
        # the gaps, then the transport write(s).
        transport = self._transport
        if self._held:
            self._give_back_released()
        frames = -(-count // max_frame)
        size = count + 9 * frames
        buf = COPY_BUFFERS.take(size)
        view = memoryview(buf)
        slots = []
        pos = 0
        left = count
        while left:
            n = min(max_frame, left)
            left -= n
            last = left == 0 and end_stream
            DATA_HEADER.pack_into(buf, pos, n << 8, 1 if last else 0, stream_id)
            slots.append(view[pos + 9 : pos + 9 + n])
            pos += 9 + n
        try:
            got = os.preadv(fd, slots, offset)
        except OSError:
            got = 0  # a failing read: nothing framed yet, the caller resets the stream
        if got < count:
            COPY_BUFFERS.give_back(buf)
            return got
        self.flush()
        if self.write_each_frame and frames > 1:
            # A run the window cut short: the peer can read the first frame while the next is
            # written (README "Zero-copy or copy").
            write = transport.write
            step = max_frame + 9
            for start in range(0, size, step):
                write(view[start : min(size, start + step)])
        else:
            transport.write(view[:size])
        # Whether the transport kept a view of the buffer: every view holds a reference to
        # it, so with ours gone only ``buf`` and getrefcount's argument are left when it did
        # not. TLS encrypts each write at once and keeps none; a full h2c socket keeps one
        # until it drains. (The transport's queue size cannot tell: over TLS it counts the
        # encrypted bytes too, and each connection would keep a 256 KiB buffer.)
        del view, slots
        if sys.getrefcount(buf) > 2:
            self._held.append(buf)
        else:
            COPY_BUFFERS.give_back(buf)
        return count

    def _give_back_released(self) -> None:
        """Return held copy buffers of which the transport keeps no view any more."""
        still_held = []
        for held in self._held:
            # References: the list, this loop's name, getrefcount's argument; more is a view.
            if sys.getrefcount(held) > 3:
                still_held.append(held)
            else:
                COPY_BUFFERS.give_back(held)
        self._held = still_held

    def _peer_gone(self, done: int) -> tuple[int, bool]:
        """The peer closed or reset the socket under a zero-copy frame (EPIPE, ECONNRESET):
        not our error. Stop writing and end the connection; connection_lost cleans up."""
        self.writable = False
        self._transport.abort()
        return done, True

    def _copy_rest(self, prefix: bytes, fd: int, offset: int, count: int) -> int:
        try:
            payload = os.pread(fd, count, offset)
        except OSError:
            payload = b""  # a failing read counts as a file that ended here (zero-filled)
        got = len(payload)
        STATS.body_bytes_copy += got
        if got < count:
            # The file shrank under us. The header promised ``count`` bytes: zero-fill to keep
            # the connection's framing; the caller resets the stream.
            payload += bytes(count - got)
        self._transport.write(prefix + payload if prefix else payload)
        return got

    def close(self) -> None:
        self._parts = []
        for held in self._held:  # not back to the pool: a closing transport may hold views
            COPY_BUFFERS.forget(held)
        self._held = []
        self._transport = DETACHED  # see H2Protocol.connection_lost
        self.writable = False
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self.use_sendfile = False
