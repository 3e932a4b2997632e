"""The worker's copy buffers: solo runs' 1 MiB buffers are bounded per worker, and no buffer
is lent again while a transport still views it.

A lone download sends 1 MiB runs only while the worker has a large buffer to spare; a
connection whose transport keeps one (a slow client) holds it, so without the bound many slow
clients with one download each would hold 1 MiB apiece. Whether a transport still views a
buffer is asked of the buffer itself (sink.in_use), not counted: a stand-in transport here
keeps the views a full socket would, so a buffer lent twice shows as bytes overwritten.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.frames import data_frames

from h2stream.config import Config
from h2stream.io.readahead import ReadAheadBudget
from h2stream.io.sink import (
    _COPY_BUF,
    _LARGE_COPY_BUF,
    SOLO_RUN,
    CopyBuffers,
    TransportSink,
    in_use,
)
from h2stream.runtime.server import Server


def test_large_buffers_are_bounded_and_reused() -> None:
    pool = CopyBuffers()
    assert pool.large_available()
    first = pool.take(SOLO_RUN + 9 * 64)
    second = pool.take(SOLO_RUN)
    assert len(first) == len(second) == _LARGE_COPY_BUF
    assert not pool.large_available()  # both in transports: solo runs shrink meanwhile
    pool.give_back(first)
    assert pool.large_available()
    assert pool.take(SOLO_RUN) is first  # reused, not made again
    pool.forget(second)  # left to a closed transport: it never comes back
    assert pool.large_available()
    pool.give_back(first)
    third = pool.take(SOLO_RUN)
    assert third is first
    pool.give_back(third)
    # Never more than MAX_LARGE kept or out, whatever comes back.
    extra = [pool.take(SOLO_RUN) for _ in range(CopyBuffers.MAX_LARGE + 1)]
    for buf in extra:
        pool.give_back(buf)
    assert len(pool._free_large) <= CopyBuffers.MAX_LARGE
    pool.release_idle()
    assert pool.large_available() and not pool._free_large


def test_small_runs_use_small_buffers() -> None:
    pool = CopyBuffers()
    small = pool.take(64 * 1024)
    assert len(small) == _COPY_BUF
    pool.give_back(small)
    assert pool.take(200 * 1024) is small
    assert pool.large_available()


# -- a buffer goes back to the pool only once nothing views it ------------------------------

FRAME = 16384
RUN = 4 * FRAME  # a run that fills a 256 KiB buffer


class HoldingTransport:
    """Where a transport would be: it keeps every view written to it, as uvloop's does while
    the socket is full, until :meth:`drain`; with ``hold`` False it copies each write at once
    (as TLS encrypts it). ``seen`` is every pooled buffer a write came from."""

    def __init__(self, hold: bool = True) -> None:
        self.hold = hold
        self.kept: list[memoryview] = []
        self.sent = bytearray()
        self.seen: list[object] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if isinstance(data, memoryview):
            if not any(data.obj is buf for buf in self.seen):
                self.seen.append(data.obj)
            if self.hold:
                self.kept.append(data)
                return
        self.sent += data

    def get_write_buffer_size(self) -> int:
        return sum(len(view) for view in self.kept)

    def drain(self) -> None:
        """The kernel took it all: the views are gone."""
        for view in self.kept:
            self.sent += view
        self.kept.clear()

    def viewed(self) -> list[object]:
        """The buffers the kept views are of, each once."""
        out: list[object] = []
        for view in self.kept:
            if not any(view.obj is buf for buf in out):
                out.append(view.obj)
        return out


def among(buf: object, bufs: list[object]) -> bool:
    return any(buf is other for other in bufs)


def sink_on(transport: HoldingTransport, pool: CopyBuffers) -> TransportSink:
    return TransportSink(
        transport,  # type: ignore[arg-type]
        None,
        pool,
        ReadAheadBudget(),
        sendfile=False,
    )


@pytest.fixture
def file_fd(tmp_path: Path) -> Iterator[tuple[int, bytes]]:
    # Random bytes: a buffer overwritten with the same pattern from elsewhere cannot hide.
    data = os.urandom(8 * RUN)
    path = tmp_path / "body.bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    yield fd, data
    os.close(fd)


def payloads(wire: bytes | bytearray) -> bytes:
    """The DATA payloads of whole frames, in order."""
    return b"".join(payload for _, _, payload in data_frames(wire))


def test_in_use_sees_any_live_view_and_leaves_the_bytes_alone() -> None:
    buf = bytearray(b"abc")
    other_name = buf  # a plain reference is no view: it does not keep the buffer out
    assert not in_use(buf)
    view = memoryview(buf)
    piece = view[1:]
    del view
    assert in_use(buf)  # the slice keeps the export alive
    del piece
    assert not in_use(buf)
    assert buf == b"abc" and other_name is buf


def test_a_buffer_the_transport_views_is_never_lent_again_until_released(
    file_fd: tuple[int, bytes],
) -> None:
    fd, data = file_fd
    transport = HoldingTransport()
    sink = sink_on(transport, CopyBuffers())
    assert sink.copy_file_frames(1, fd, 0, RUN, FRAME, end_stream=False) == RUN
    # The socket is "full": every further run must take a buffer nobody views.
    for n in range(1, 4):
        assert sink.copy_file_frames(1, fd, n * RUN, RUN, FRAME, end_stream=False) == RUN
        assert len(transport.viewed()) == n + 1, "a buffer the transport views was lent again"
    held = transport.viewed()
    transport.drain()
    assert sink.copy_file_frames(1, fd, 4 * RUN, RUN, FRAME, end_stream=False) == RUN
    (reused,) = transport.viewed()
    assert among(reused, held), "a released buffer did not go back to the pool"
    transport.drain()
    assert payloads(transport.sent) == data[: 5 * RUN]


def test_another_connection_cannot_take_a_buffer_a_transport_views(
    file_fd: tuple[int, bytes],
) -> None:
    """The pool is the worker's: a stalled connection's buffer stays out of a fast one's
    runs, and goes back to the pool once the stalled transport has sent it."""
    fd, data = file_fd
    pool = CopyBuffers()
    stalled, fast = HoldingTransport(), HoldingTransport(hold=False)
    stalled_sink, fast_sink = sink_on(stalled, pool), sink_on(fast, pool)
    stalled_sink.copy_file_frames(1, fd, 0, RUN, FRAME, end_stream=False)
    (kept,) = stalled.viewed()
    for n in range(8):
        fast_sink.copy_file_frames(1, fd, n * RUN, RUN, FRAME, end_stream=False)
    assert not among(kept, fast.seen)
    assert len(fast.seen) == 1  # a transport that copies at once gives its buffer back
    assert payloads(fast.sent) == data
    stalled.drain()
    assert payloads(stalled.sent) == data[:RUN]
    stalled_sink.copy_file_frames(1, fd, RUN, RUN, FRAME, end_stream=False)
    (again,) = stalled.viewed()
    assert among(again, [kept, *fast.seen]), "a new buffer where a pooled one was free"


def test_a_read_ahead_buffer_stays_out_of_the_pool_while_viewed(
    file_fd: tuple[int, bytes],
) -> None:
    """A read-ahead's buffer goes through the same check once its last grant is sent."""
    fd, data = file_fd
    transport = HoldingTransport()
    sink = sink_on(transport, CopyBuffers())
    sink.write_each_frame = True  # a window-bound stream: the next run is read ahead
    count = 2 * FRAME
    assert sink.copy_file_frames(1, fd, 0, count, FRAME, end_stream=False, following=RUN) == count
    ahead = sink._ahead
    assert ahead is not None
    ahead_buf, grant = ahead.buf, ahead.left
    del ahead
    # The whole read-ahead as one grant: sent from its buffer, which is then let go.
    assert sink.copy_file_frames(1, fd, count, grant, FRAME, end_stream=False) == grant
    assert sink._ahead is None
    assert among(ahead_buf, transport.viewed())
    sink.write_each_frame = False
    offset = count + grant
    for _ in range(3):
        assert sink.copy_file_frames(1, fd, offset, RUN, FRAME, end_stream=False) == RUN
        offset += RUN
    # The first run, the read-ahead, three more: five buffers, none lent twice.
    assert len(transport.viewed()) == 5
    held = transport.viewed()
    transport.drain()
    assert payloads(transport.sent) == data[:offset]
    sink.copy_file_frames(1, fd, offset, RUN, FRAME, end_stream=False)
    (reused,) = transport.viewed()
    assert among(reused, held)


# -- the pools are a server's, not the process's -------------------------------------------


def test_each_server_has_its_own_pools_and_its_idle_trim_empties_only_them() -> None:
    """Two servers in one process (tests run servers in-process) share no pool or budget."""
    config = Config(max_zstd_contexts=3)
    first, second = Server(config, lambda exchange: None), Server(config, lambda exchange: None)
    for part in ("copy_buffers", "read_ahead", "budget", "zstd"):
        assert getattr(first.context, part) is not getattr(second.context, part), part
    assert first.context.zstd.budget.limit == 3
    for server in (first, second):
        pool = server.context.copy_buffers
        pool.give_back(pool.take(RUN))
        zstd = server.context.zstd
        zstd.context_done(1, zstd.context(1))
    first.context.release_idle()
    assert not first.context.copy_buffers._free and not first.context.zstd._idle
    assert second.context.copy_buffers._free and second.context.zstd._idle
