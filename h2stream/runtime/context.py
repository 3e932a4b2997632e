"""A worker's pools and budgets, in one object its server makes and hands down.

Nothing here is module-wide, so two servers in one process (tests run servers in-process)
never share a pool or a budget. Each part's class stays in the layer that uses it, and lower
layers receive the parts they draw on, never this object:

- ``copy_buffers`` (:class:`~h2stream.io.sink.CopyBuffers`): the copy path's buffers, shared
  by the worker's connections;
- ``read_ahead`` (:class:`~h2stream.io.readahead.ReadAheadBudget`): how many read-aheads its
  connections may hold at once;
- ``budget`` (:class:`~h2stream.core.limits.WorkerBudget`): the fd budget, connections and
  streams, shared out of RLIMIT_NOFILE when the server starts;
- ``zstd`` (:class:`~h2stream.body.compressors.ZstdContexts`): the zstd contexts its
  compressed streams borrow, at most ``--max-zstd-contexts`` at once;
- ``flushes`` (:class:`~h2stream.io.flushbatch.FlushBatch`): the connections whose output
  waits for the end of the loop's turn.

The hot path's counters (:data:`~h2stream.core.stats.STATS`) stay module-wide: they are only
ever added to, and a worker is a process of its own.
"""

from __future__ import annotations

from h2stream.body.compressors import ZstdContexts
from h2stream.config import Config
from h2stream.core.limits import WorkerBudget
from h2stream.io.flushbatch import FlushBatch
from h2stream.io.readahead import ReadAheadBudget
from h2stream.io.sink import CopyBuffers


class WorkerContext:
    """The pools and budgets of one worker (one :class:`~h2stream.runtime.server.Server`)."""

    __slots__ = ("budget", "copy_buffers", "flushes", "read_ahead", "zstd")

    def __init__(self, config: Config) -> None:
        self.copy_buffers = CopyBuffers()
        self.read_ahead = ReadAheadBudget()
        self.budget = WorkerBudget()  # unlimited until the server's start() shares out the fds
        self.zstd = ZstdContexts(config.max_zstd_contexts)
        self.flushes = FlushBatch()

    def release_idle(self) -> None:
        """Drop what is kept for reuse under load: the idle worker's heap trim (memory.py)
        then returns it to the OS."""
        self.copy_buffers.release_idle()
        self.zstd.release_idle()
