"""Small files kept in memory, so serving one costs at most a single ``lstat`` instead of an
open, an fstat, a read and a close.

A hit is revalidated before use: the entry is served only while ``lstat`` of its real path
still shows the same file (device, inode, ctime, mtime, size). Any write, truncation, chmod,
rename over it or symlink swap changes one of them, and the next request reads the file
afresh. One ``lstat`` serves every request answered before the worker next reads from the
network (core/reads.py): those requests had all arrived when it was taken, so each still gets
the file as it was at a moment between its arrival and its answer. The resolution of the
request path itself (symlinks, containment in ROOT) stays ``FileRoot``'s, under its own
time-to-live: an entry is consulted only for a target that ``FileRoot`` has proven within
that time.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

from h2stream.core.reads import READS
from h2stream.handlers.files import FilePlan, OpenFile

# Larger files gain little (the syscalls saved are per request, not per byte) and would
# crowd the budget.
LARGEST_FILE = 64 * 1024


class CachedFile(OpenFile):
    """An OpenFile without an fd: its bytes are in ``data`` (``close`` does nothing)."""

    __slots__ = ("_whole_get", "_whole_head", "checked_at", "data", "identity")

    def __init__(self, data: bytes, identity: tuple[int, int, int, int, int], opened: OpenFile):
        super().__init__(
            -1, opened.size, opened.mtime, opened.etag, opened.last_modified, opened.content_type
        )
        self.data = data
        self.identity = identity
        # READS.value when the file on disk was last seen to be this one.
        self.checked_at = READS.value
        # Planned once: most requests for a small file are a plain GET of all of it. The
        # plans' header lists are shared by every such response (never mutated downstream).
        self._whole_get = OpenFile.whole_plan(self, b"GET")
        self._whole_head = OpenFile.whole_plan(self, b"HEAD")

    def whole_plan(self, method: bytes) -> FilePlan:
        return self._whole_get if method == b"GET" else self._whole_head


def _identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_ctime_ns, st.st_mtime_ns, st.st_size)


class SmallFiles:
    """Up to ``budget`` bytes of files no larger than :data:`LARGEST_FILE`, oldest out first."""

    __slots__ = ("_budget", "_entries", "_excluded", "_held", "_largest")

    def __init__(self, budget: int, excluded: Callable[[str], bool] | None = None) -> None:
        self._budget = budget
        self._largest = min(LARGEST_FILE, budget)
        # Content types served another way (compressed on the fly): never kept.
        self._excluded = excluded
        self._entries: dict[str, CachedFile] = {}
        self._held = 0

    def get(self, real: str, dev: int, ino: int, ctime_ns: int) -> CachedFile | None:
        """The entry for ``real`` if the file there is still the one proven (``dev``,
        ``ino``, ``ctime_ns``) and the one kept."""
        entry = self._entries.get(real)
        if entry is None:
            return None
        identity = entry.identity
        if (  # seen on disk since the last read from the network: see core/reads.py
            entry.checked_at == READS.value
            and identity[1] == ino
            and identity[2] == ctime_ns
            and identity[0] == dev
        ):
            return entry
        try:
            st = os.lstat(real)
        except OSError:
            self._drop(real)
            return None
        now = (st.st_dev, st.st_ino, st.st_ctime_ns, st.st_mtime_ns, st.st_size)  # _identity
        if now != identity or now[1] != ino or now[2] != ctime_ns or now[0] != dev:
            self._drop(real)
            return None
        entry.checked_at = READS.value
        return entry

    def keep(self, real: str, opened: OpenFile, st: os.stat_result) -> CachedFile | None:
        """Read ``opened`` (its fd stays the caller's) into an entry, if it is small, of a
        type kept, and fits the budget; None otherwise."""
        size = st.st_size
        if (
            size > self._largest
            or not stat.S_ISREG(st.st_mode)
            or (self._excluded is not None and self._excluded(opened.content_type))
        ):
            return None
        try:
            data = os.pread(opened.fd, size, 0)
        except OSError:
            return None
        if len(data) != size:
            return None  # changing under us: read it again next time
        self._drop(real)
        while self._entries and self._held + size > self._budget:
            oldest = next(iter(self._entries))
            self._drop(oldest)
        entry = CachedFile(data, _identity(st), opened)
        self._entries[real] = entry
        self._held += size
        return entry

    def _drop(self, real: str) -> None:
        entry = self._entries.pop(real, None)
        if entry is not None:
            self._held -= len(entry.data)

    @property
    def held(self) -> int:
        """Bytes of file content kept."""
        return self._held
