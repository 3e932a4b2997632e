"""Give the heap's free pages back to the OS once a worker has gone idle.

A burst of connections leaves the C heap fragmented: freed blocks between live ones stay
resident, so a worker's RSS ratchets up from one burst to the next (most over TLS, where
uvloop's and OpenSSL's buffers come and go with each connection and each write). glibc's
``malloc_trim(0)`` returns those pages. It walks the heap (about a millisecond), so it runs
only once the last connection has closed and the worker has stayed idle for a moment, after
the pools kept for load are emptied and a full garbage collection has freed what only cycles
held (h2's connection objects are cycles: the transport is cut loose from them when the
connection is lost, protocol.py; the rest waited for the next full collection, about 0.3 MiB
of heap per TLS C-many run). Tuning malloc instead (a fixed mmap threshold) was tried: it
made every 256 KiB buffer a fresh mmap and halved TLS throughput.
"""

from __future__ import annotations

import asyncio
import functools
import gc
from collections.abc import Callable, Sized
from typing import Protocol

# Seconds without connections before the heap is trimmed.
IDLE_DELAY = 1.0


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    # ctypes is loaded at the first trim, not at start: a worker at rest does without it.
    import ctypes

    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc (musl, macOS): nothing to do
    return trim


class Releasable(Protocol):
    def release_idle(self) -> None:
        """Drop what was kept for reuse under load (copy buffers, codec contexts)."""


def release_free_memory(pools: Releasable) -> bool:
    """Empty the worker's ``pools`` (context.WorkerContext), then return the heap's free
    pages to the OS; False where the C library cannot."""
    pools.release_idle()
    gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


class IdleTrim:
    """Empties the worker's ``pools`` and trims the heap :data:`IDLE_DELAY` seconds after the
    last connection closed, if no connection came in the meantime."""

    def __init__(self, connections: Sized, pools: Releasable) -> None:
        self._connections = connections
        self._pools = pools
        self._handle: asyncio.TimerHandle | None = None
        self.trims = 0

    def connection_closed(self) -> None:
        if self._connections or self._handle is not None:
            return
        self._handle = asyncio.get_running_loop().call_later(IDLE_DELAY, self._run)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _run(self) -> None:
        self._handle = None
        if not self._connections and release_free_memory(self._pools):
            self.trims += 1
