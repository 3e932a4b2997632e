"""Reads from the network in this worker, counted: the unit in which one look at the disk
serves every request answered.

Everything answered while the count stays the same arrived before it last moved (the count
moves when bytes are read, before they are parsed), so a look at a file taken at this count
was taken after each of those requests arrived: answering them all from that look is
answering each with the file as it was at some moment between its arrival and its answer.
Small files kept in memory are revalidated by an ``lstat`` once per count instead of once per
request (smallfiles.py): a read of 100 requests costs one ``lstat``, not 100.

Every path that hands the core bytes fresh from a socket moves the count first (io/protocol:
``data_received`` and the busy poller's reads); bytes held back and parsed in a later turn
arrived before it, and need no move.
"""

from __future__ import annotations


class ReadCount:
    """One counter per process (a worker is one event loop; tests' in-process servers share
    it, which only moves it more often: more looks, never fewer)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


READS = ReadCount()
