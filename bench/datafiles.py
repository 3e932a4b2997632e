"""The files every server serves: made once, reused while their size matches."""

from __future__ import annotations

import os
import struct
from pathlib import Path

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30

# name -> size. The full set is what the scenarios name; the quick set stands in for it.
FULL_FILES = {"1k.bin": KIB, "1m.bin": MIB, "100m.bin": 100 * MIB, "1g.bin": GIB}
QUICK_FILES = {"1k.bin": KIB, "64k.bin": 64 * KIB, "1m.bin": MIB}


def _write(path: Path, size: int) -> None:
    """Fill ``path`` with incompressible bytes at disk speed.

    One MiB of os.urandom, repeated with each MiB's index as an 8-byte prefix: no two MiB are
    equal (so nothing could dedupe or cache by content) and 1 GiB takes about a second, where
    urandom for all of it would take several.
    """
    block = bytearray(os.urandom(min(size, MIB)))
    tmp = path.with_name(path.name + ".part")
    with tmp.open("wb") as f:
        written, index = 0, 0
        while written < size:
            if len(block) >= 8:
                struct.pack_into(">Q", block, 0, index)
            n = min(len(block), size - written)
            f.write(memoryview(block)[:n])
            written += n
            index += 1
    tmp.replace(path)


def ensure(directory: Path, files: dict[str, int]) -> list[str]:
    """Create the missing or wrong-sized files; return the names it (re)wrote."""
    directory.mkdir(parents=True, exist_ok=True)
    made = []
    for name, size in files.items():
        path = directory / name
        if path.is_file() and path.stat().st_size == size:
            continue
        _write(path, size)
        made.append(name)
    return made


def warm(directory: Path, files: dict[str, int]) -> None:
    """Read every file once so the first server measured does not pay for a cold page cache."""
    buf = bytearray(4 * MIB)
    for name in files:
        with (directory / name).open("rb", buffering=0) as f:
            while f.readinto(buf):
                pass
