"""The files the tests serve and the digests they compare bodies with."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# name -> size: the sizes the integrity tests fetch (frame-boundary cases around 16 KiB).
SIZES = {
    "empty.bin": 0,
    "one.bin": 1,
    "f16383.bin": 16383,
    "f16384.bin": 16384,
    "f16385.bin": 16385,
    "kib.bin": 1024,
    "mib.bin": 1 << 20,
    "f100m.bin": 100 << 20,
    "f256m.bin": 256 << 20,
}


def write_pattern(path: Path, size: int) -> None:
    """Fill a file fast with bytes that differ at every offset from one MiB to the next (one
    random MiB, rotated by a different amount each time), so that bytes from the wrong place
    in the file change the hash, not only bytes from elsewhere."""
    block = os.urandom(1 << 20)
    with open(path, "wb") as out:
        written = 0
        index = 0
        while written < size:
            shift = (index * 65599 + 4093) % len(block)
            chunk = block[shift:] + block[:shift]
            n = min(len(chunk), size - written)
            out.write(chunk[:n])
            written += n
            index += 1


def populate(root: Path) -> Path:
    """The shared test ROOT: every file of :data:`SIZES`, a text file, a directory with an
    index and a name with a space."""
    for name, size in SIZES.items():
        write_pattern(root / name, size)
    (root / "hello.txt").write_text("hello, h2stream\n")
    (root / "docs").mkdir()
    (root / "docs" / "index.html").write_text("<!doctype html><title>index</title>\n")
    (root / "space name.txt").write_text("spaces\n")
    return root


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
