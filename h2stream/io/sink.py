"""The one writer of a connection: queued bytes through the transport, file payloads by sendfile.

Order is the invariant. Bytes are queued here and flushed to the transport before any
zero-copy frame; a zero-copy frame goes to the kernel directly (header by ``send(MSG_MORE)`` on
a duplicate of the socket, payload by ``os.sendfile``) only while the transport's buffer is
empty, which uvloop guarantees means everything before it is already in the kernel. When the
socket fills mid-frame, the rest of that frame is read into memory and handed to the transport,
whose ``pause_writing`` then stops the scheduler until it has drained.

The copy path's pooled buffers (:class:`CopyBuffers`) and the read-ahead budget are the
worker's, made by its server (runtime/context.py) and handed to each connection's writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import Protocol

from h2stream.core.frames import DATA_HEADER, data_header
from h2stream.core.framing import SinkBase
from h2stream.core.limits import WorkerBudget
from h2stream.core.stats import STATS
from h2stream.io.flushbatch import FlushBatch
from h2stream.io.readahead import ReadAhead, ReadAheadBudget

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

MSG_MORE = getattr(socket, "MSG_MORE", 0)
# Copy runs up to this size go as one fresh bytes joined with queued output; larger ones are
# read into a pooled buffer laid out as frames: up to 256 KiB of 16 KiB frames (the fairness
# quantum's runs, TLS) or a whole solo run (every frame at least 16 KiB, RFC 9113 §6.5.2).
_SMALL_COPY = 16384
_COPY_BUF = 256 * 1024 + 9 * 16
_LARGE_COPY_BUF = SOLO_RUN + 9 * (SOLO_RUN // 16384)
_NO_BUFFER = bytearray()
# A read-ahead covers the next run of the size the window allowed this time, at least 64 KiB
# (RFC 9113's default window) and at most what a 256 KiB copy buffer holds in 16 KiB frames.
READ_AHEAD_MIN = 65535
READ_AHEAD_MAX = 15 * 16384


def in_use(buf: bytearray) -> bool:
    """Whether some memoryview of ``buf`` is alive: the transport's, with bytes still to send.

    A bytearray refuses to resize (BufferError) while any export of its buffer exists: the
    buffer protocol's own guarantee, which keeps every view's pointer valid, so a buffer this
    calls free cannot be read by anyone. Popping and re-appending the last byte is the
    cheapest resize and never reallocates; about 70 ns when free, as much as the reference
    count it replaces (which needed every other name of the buffer counted by hand: one
    miscount, or a change in CPython's counting, would hand out a buffer still being sent).
    """
    try:
        last = buf.pop()
    except BufferError:
        return True
    buf.append(last)
    return False


class CopyBuffers:
    """The worker's copy-path buffers, shared by its connections.

    A run's buffer is busy only until the transport has taken the bytes: almost always by
    the end of the write, when it goes straight back here for the next run of any
    connection. A connection whose transport kept a view of it (the socket was full) holds it
    until that drained (:func:`in_use`). So the worker needs about one buffer plus one per
    connection that is backlogged right now, not 256 KiB for every connection (C-many: 10
    connections).
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
        """Take back a buffer nothing views any more (the caller checked :func:`in_use`)."""
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
        """An idle worker keeps none (the runtime's idle trim calls this)."""
        self._free.clear()
        self._free_large.clear()


class WorkerPools(Protocol):
    """What a connection draws from its worker's context: the writer's copy buffers and
    read-ahead budget, the fd budget its session enforces, and the end-of-turn flushes."""

    copy_buffers: CopyBuffers
    read_ahead: ReadAheadBudget
    budget: WorkerBudget
    flushes: FlushBatch


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


# Queued output of at least this size is handed over as a list (one writev), not joined.
GATHER_MIN = 64 * 1024
# ... when its parts average at least this size.
GATHER_PART = 2048


def _immutable(parts: list[bytes | bytearray | memoryview]) -> bool:
    """Whether every part is bytes or a view of bytes (nothing can change it later)."""
    for part in parts:
        kind = part.__class__
        if kind is not bytes and (
            kind is not memoryview or part.obj.__class__ is not bytes  # type: ignore[union-attr]
        ):
            return False
    return True


# The largest DATA frame copied through a busy transport (see send_file_frames).
BUSY_FRAME = 16384


class TransportSink(SinkBase):
    """Implements :class:`h2stream.core.framing.FrameSink` on an asyncio/uvloop transport."""

    __slots__ = (
        "_ahead",
        "_buffers",
        "_gather",
        "_held",
        "_parts",
        "_pending",
        "_read_ahead_budget",
        "_sock",
        "_sock_fd",
        "_solo_run",
        "_tail",
        "_transport",
        "copy_small_frames",
        "flush_at",
        "shared_turn",
        "use_sendfile",
        "writable",
        "write_each_frame",
    )

    def __init__(
        self,
        transport: asyncio.Transport,
        raw_socket: socket.socket | None,
        buffers: CopyBuffers,
        read_ahead: ReadAheadBudget,
        flush_at: int = FLUSH_AT,
        solo_run: int = SOLO_RUN,
        sendfile: bool = True,
    ) -> None:
        self._transport = transport
        self._parts: list[bytes | bytearray | memoryview] = []
        self._pending = 0
        # The worker's copy buffers, and those of them the transport still views.
        self._buffers = buffers
        self._held: list[bytearray] = []
        # The next frames of a stream that flow control holds back (readahead.py), under the
        # worker's budget of them.
        self._ahead: ReadAhead | None = None
        self._read_ahead_budget = read_ahead
        # A duplicate of the transport's socket, for send(MSG_MORE) and sendfile only; it is
        # never registered with the loop.
        self._sock = raw_socket
        self._sock_fd = raw_socket.fileno() if raw_socket is not None else -1
        self.use_sendfile = raw_socket is not None and sendfile
        # The rest of a frame the socket could not take, sent as it drains: [fd, offset,
        # count] (see _send_tail); nothing else may reach the transport meanwhile.
        self._tail: list[int] | None = None
        self.copy_small_frames = False
        self.write_each_frame = False
        self.shared_turn = False
        self.writable = True
        # Queued bytes go to the transport once they reach this size.
        self.flush_at = flush_at
        self._solo_run = solo_run
        # A plain socket's transport writes a list with one writev; TLS would encrypt each
        # part as a record of its own (its writelines), so it gets them joined.
        extra = getattr(transport, "get_extra_info", None)
        self._gather = extra is not None and extra("ssl_object") is None

    @property
    def solo_run(self) -> int:
        """SOLO_RUN while the worker has a large copy buffer to spare, else 256 KiB."""
        if self._solo_run > SHORT_SOLO_RUN and not self._buffers.large_available():
            return SHORT_SOLO_RUN
        return self._solo_run

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._parts.append(data)
        self._pending += len(data)
        if self._pending >= self.flush_at:
            self.flush()

    def flush(self) -> None:
        parts = self._parts
        if not parts or self._tail is not None:
            return
        self._parts = []
        pending = self._pending
        self._pending = 0
        if len(parts) == 1:
            self._transport.write(parts[0])
        elif (
            pending >= GATHER_MIN
            and pending >= len(parts) * GATHER_PART
            and self._gather
            and _immutable(parts)
        ):
            # Large payloads (a gRPC stream's messages, BytesBody) go to the kernel in one
            # writev from where they lie: joining them first copied every byte once more, into
            # a fresh 256 KiB object each time. Only immutable ones: the transport keeps views
            # of what the socket cannot take. Many small parts (small responses) are joined:
            # the transport's cost per part would outweigh the copy.
            self._transport.writelines(parts)
        else:
            self._transport.write(b"".join(parts))

    def send_file_frames(
        self, stream_id: int, fd: int, offset: int, count: int, max_frame: int
    ) -> tuple[int, bool]:
        self.flush()
        transport = self._transport
        sock = self._sock
        if not self.writable or transport.get_write_buffer_size() or sock is None:
            # Not our turn to touch the kernel: frame one through the transport, small, as
            # it is copied whole (with 1 MiB frames a full frame here cost 7% of a body).
            n = min(max_frame, count, BUSY_FRAME)
            got = self._copy_rest(data_header(n, stream_id), fd, offset, n)
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
                    sent_header = send(header, MSG_MORE)
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
                    # resets the stream, so the client never takes zeros for the file.
                    self._transport.write(bytes(n))
                    return done + n, False
                zero_copy += sent
                if sent < n:
                    # Socket full mid-frame: the rest follows by sendfile as it drains. If
                    # that cannot be arranged (or the file ended early), finish the frame
                    # through the transport, which then pauses us until it drains.
                    if sent and self._send_tail(fd, offset + done + sent, n - sent):
                        return done + n, True
                    got = self._copy_rest(b"", fd, offset + done + sent, n - sent)
                    return done + n, got == n - sent
                done += n
        finally:
            STATS.body_bytes_sendfile += zero_copy
        return done, True

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
        ahead = self._ahead
        if ahead is not None and ahead.stream_id != stream_id:
            ahead = None  # another stream's: it keeps it, this one reads as usual
        elif ahead is not None and not ahead.continues(stream_id, fd, offset, max_frame):
            self.drop_read_ahead()  # this stream moved on (a zero-copy run, a new frame size)
            ahead = None
        if ahead is not None:
            got = self._copy_after_read_ahead(ahead, fd, offset, count, end_stream)
        elif count <= _SMALL_COPY:
            got = self._copy_small(stream_id, fd, offset, count, end_stream)
        else:
            run = self._read_frames(stream_id, fd, offset, count, max_frame, end_stream)
            if run is None:
                return 0  # the file shrank or failed: nothing queued, the caller resets
            self.flush()
            self._write_frames(run[0], run[1], max_frame)
            got = count
        if (
            got == count
            and following
            and self.write_each_frame
            and not self.shared_turn
            and self._ahead is None
        ):
            # The window cut this run short: read the next while the peer reads this one.
            self._read_ahead(stream_id, fd, offset + count, count, max_frame, following)
        return got

    def read_ahead(
        self, stream_id: int, fd: int, offset: int, count: int, max_frame: int, following: int
    ) -> None:
        """The next stream's run, read while the peer reads this one's (streams taking turns
        on a connection window that binds: A-100m-w16); another stream's read-ahead, which
        would wait for its turn, gives way."""
        ahead = self._ahead
        if ahead is not None:
            if ahead.continues(stream_id, fd, offset, max_frame):
                return
            self.drop_read_ahead()
        self._read_ahead(stream_id, fd, offset, count, max_frame, following)

    def _copy_small(
        self, stream_id: int, fd: int, offset: int, count: int, end_stream: bool
    ) -> int:
        """One small frame: a fresh bytes joins the queued HEADERS in the next write."""
        try:
            payload = os.pread(fd, count, offset)
        except OSError:
            return 0  # a failing read: nothing framed yet, the caller resets the stream
        if len(payload) < count:
            return len(payload)
        self.write(data_header(count, stream_id, end_stream) + payload)
        return count

    def _copy_after_read_ahead(
        self, ahead: ReadAhead, fd: int, offset: int, count: int, end_stream: bool
    ) -> int:
        """Send a grant from the read-ahead, and whatever it lacks read afresh. The fresh part
        is read first, so a file that shrank is caught before any of the grant goes out."""
        max_frame = ahead.max_frame
        from_ahead = min(count, ahead.left)
        rest = count - from_ahead
        fresh = None
        if rest:
            fresh = self._read_frames(
                ahead.stream_id, fd, offset + from_ahead, rest, max_frame, end_stream
            )
            if fresh is None:
                self.drop_read_ahead()
                return 0
        start = ahead.pos
        end = ahead.take(from_ahead, end_stream and not rest)
        STATS.body_bytes_read_ahead += from_ahead
        self.flush()
        self._write_span(ahead.buf, start, end, max_frame)
        if not ahead.left:
            self.drop_read_ahead()
        if fresh is not None:
            self._write_frames(fresh[0], fresh[1], max_frame)
        return count

    def _read_frames(
        self, stream_id: int, fd: int, offset: int, count: int, max_frame: int, end_stream: bool
    ) -> tuple[bytearray, int] | None:
        """One preadv of ``count`` bytes straight into a pooled buffer laid out as frames,
        headers in the gaps. Returns the buffer and the frames' size, or None (given back)
        when the file came up short or failed."""
        if self._held:
            self._give_back_released()
        frames = -(-count // max_frame)
        size = count + 9 * frames
        buf = self._buffers.take(size)
        view = memoryview(buf)
        slots = []
        pos = 0
        left = count
        pack_into = DATA_HEADER.pack_into
        while left:
            n = min(max_frame, left)
            left -= n
            pack_into(buf, pos, n << 8, 1 if left == 0 and end_stream else 0, stream_id)
            slots.append(view[pos + 9 : pos + 9 + n])
            pos += 9 + n
        try:
            got = os.preadv(fd, slots, offset)
        except OSError:
            got = 0  # a failing read: nothing framed yet, the caller resets the stream
        del view, slots  # ours: while they live, the buffer counts as in use
        if got < count:
            self._buffers.give_back(buf)
            return None
        return buf, size

    def _write_frames(self, buf: bytearray, size: int, max_frame: int) -> None:
        """Hand the frames laid out in ``buf[:size]`` to the transport, then settle ``buf``."""
        self._write_span(buf, 0, size, max_frame)
        self._settle(buf)

    def _write_span(self, buf: bytearray, start: int, end: int, max_frame: int) -> None:
        """Write the frames in ``buf[start:end]``: full-size ones, the last maybe shorter."""
        view = memoryview(buf)
        if self.write_each_frame and end - start > max_frame + 9:
            # A run the window cut short: the peer can read the first frame while the next is
            # written (README "Zero-copy or copy").
            write = self._transport.write
            step = max_frame + 9
            for pos in range(start, end, step):
                write(view[pos : min(end, pos + step)])
        else:
            self._transport.write(view[start:end])
        del view

    def _settle(self, buf: bytearray) -> None:
        """Return ``buf`` to the pool unless the transport still holds a view of it (our own
        views are gone by now: :func:`in_use` would count them too).

        TLS encrypts each write at once and keeps none; a full h2c socket keeps one until it
        drains. (The transport's queue size cannot tell: over TLS it counts the encrypted
        bytes too, and each connection would keep a 256 KiB buffer.)
        """
        if in_use(buf):
            self._held.append(buf)
        else:
            self._buffers.give_back(buf)

    def _read_ahead(
        self, stream_id: int, fd: int, offset: int, grant: int, max_frame: int, following: int
    ) -> None:
        """Read ahead about the size of ``grant`` (the last run, or the credit expected), at
        least 64 KiB (RFC 9113's default window), at most what a copy buffer holds, and
        never past the ``following`` bytes the body has left."""
        budget = self._read_ahead_budget
        if not budget.acquire(self):
            return
        count = min(following, max(grant, READ_AHEAD_MIN), READ_AHEAD_MAX)
        run = self._read_frames(stream_id, fd, offset, count, max_frame, False)
        if run is None:
            budget.release(self)  # short: the grant's own read will tell
            return
        self._ahead = ReadAhead(run[0], fd, offset, stream_id, max_frame, count)

    @property
    def read_ahead_since(self) -> float:
        ahead = self._ahead
        return ahead.since if ahead is not None else float("inf")

    def drop_read_ahead(self, stream_id: int | None = None) -> None:
        """Give up the read-ahead (of ``stream_id`` only, if given): its stream ended, moved
        on, or another connection needs the budget."""
        ahead = self._ahead
        if ahead is None or (stream_id is not None and ahead.stream_id != stream_id):
            return
        self._ahead = None
        self._read_ahead_budget.release(self)
        buf = ahead.buf
        ahead.buf = _NO_BUFFER  # the pool may lend it again: no grant can come from it now
        self._settle(buf)

    def _give_back_released(self) -> None:
        """Return held copy buffers of which the transport keeps no view any more."""
        still_held = []
        for held in self._held:
            if in_use(held):
                still_held.append(held)
            else:
                self._buffers.give_back(held)
        self._held = still_held

    def queued(self) -> int:
        """Bytes in memory waiting for the socket: the transport's, and ours held behind a
        frame's tail."""
        held = self._pending if self._tail is not None else 0
        return self._transport.get_write_buffer_size() + held

    def unsent(self) -> int:
        """Everything written and not yet in the kernel, a frame's tail (read from its file
        as the socket drains) included: what a stalled peer leaves unmoving."""
        tail = self._tail
        return self.queued() + (tail[2] if tail is not None else 0)

    def _send_tail(self, fd: int, offset: int, count: int) -> bool:
        """Send ``count`` bytes of ``fd`` from ``offset`` by sendfile as the socket drains,
        instead of copying them into the transport. Until they are out the sink is not
        writable (a body stops as on the transport's pause_writing), its queued bytes wait,
        and then the protocol's resume_writing runs, as the transport's own would. The frame
        tail must stay contiguous on the wire, so nothing else is written before it.
        False if it cannot be arranged (the caller copies instead)."""
        try:
            tail_fd = os.dup(fd)  # the body may close its fd before the tail is out
            asyncio.get_running_loop().add_writer(self._sock_fd, self._continue_tail)
        except (OSError, RuntimeError):
            return False
        self._tail = [tail_fd, offset, count]
        self.writable = False
        return True

    def _continue_tail(self) -> None:
        tail = self._tail
        if tail is None:
            return
        fd, offset, count = tail
        zero_copy = 0
        try:
            while count:
                try:
                    sent = os.sendfile(self._sock_fd, fd, offset, count)
                except BlockingIOError:
                    tail[1], tail[2] = offset, count
                    return
                except OSError:
                    sent = 0  # the peer went away, or the disk failed: as below
                if not sent:
                    # No way to complete the frame (the file shrank, EIO, a reset): the
                    # framing is lost, so the connection ends; the client sees it fail.
                    self._end_tail()
                    self._transport.abort()
                    return
                zero_copy += sent
                offset += sent
                count -= sent
        finally:
            STATS.body_bytes_sendfile += zero_copy
        self._end_tail()
        self.writable = True
        self.flush()
        protocol = self._transport.get_protocol()
        protocol.resume_writing()

    def _end_tail(self) -> None:
        tail, self._tail = self._tail, None
        if tail is None:
            return
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_writer(self._sock_fd)
        os.close(tail[0])

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
        self._end_tail()
        self._parts = []
        self.drop_read_ahead()
        for held in self._held:  # not back to the pool: a closing transport may hold views
            self._buffers.forget(held)
        self._held = []
        self._transport = DETACHED  # see H2Protocol.connection_lost
        self.writable = False
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self.use_sendfile = False
