"""SmallFiles' bounds: what it keeps, within which budget, and what it never keeps."""

from __future__ import annotations

from pathlib import Path

from h2stream.handlers.files import FileRoot, OpenFile
from h2stream.handlers.smallfiles import LARGEST_FILE, CachedFile, SmallFiles


def _root(tmp_path: Path, cache: SmallFiles) -> FileRoot:
    root = FileRoot(str(tmp_path), ttl=60.0)
    root.content = cache
    return root


def _open_twice(root: FileRoot, path: bytes) -> OpenFile | int:
    """The first open proves the path; the second may keep the bytes."""
    first = root.open(path, content_ok=True)
    if isinstance(first, OpenFile):
        first.close()
    return root.open(path, content_ok=True)


def test_the_budget_holds_whatever_is_asked(tmp_path: Path) -> None:
    budget = 10_000
    cache = SmallFiles(budget)
    root = _root(tmp_path, cache)
    for i in range(50):
        (tmp_path / f"{i}.bin").write_bytes(bytes([i]) * 3_000)
    for i in range(50):
        opened = _open_twice(root, f"/{i}.bin".encode())
        assert isinstance(opened, CachedFile) and opened.data == bytes([i]) * 3_000
        assert cache.held <= budget
    # The oldest went first: the newest are still there, served without an fd.
    again = root.open(b"/49.bin", content_ok=True)
    assert isinstance(again, CachedFile) and again.fd == -1


def test_large_files_and_excluded_types_are_not_kept(tmp_path: Path) -> None:
    cache = SmallFiles(1 << 20, excluded=lambda content_type: content_type.startswith("text/"))
    root = _root(tmp_path, cache)
    (tmp_path / "big.bin").write_bytes(b"x" * (LARGEST_FILE + 1))
    (tmp_path / "page.txt").write_bytes(b"hello")
    for name in (b"/big.bin", b"/page.txt"):
        opened = _open_twice(root, name)
        assert isinstance(opened, OpenFile) and not isinstance(opened, CachedFile)
        assert opened.fd >= 0
        opened.close()
    assert cache.held == 0


def test_without_content_ok_every_answer_is_an_fd(tmp_path: Path) -> None:
    cache = SmallFiles(1 << 20)
    root = _root(tmp_path, cache)
    (tmp_path / "a.bin").write_bytes(b"a")
    assert isinstance(_open_twice(root, b"/a.bin"), CachedFile)
    plain = root.open(b"/a.bin")
    assert isinstance(plain, OpenFile) and not isinstance(plain, CachedFile)
    plain.close()
