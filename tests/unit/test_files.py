"""h2stream.handlers.files: path resolution against real files, and response planning."""

from __future__ import annotations

import calendar
import errno
import os
import time
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from h2stream.handlers.files import (
    ALLOW,
    FilePlan,
    FileRoot,
    OpenFile,
    allow_header,
    content_type_for,
    http_date,
    plan_file_response,
)

SECRET = b"TOP SECRET\n"
HAS_PROC_FD = os.path.isdir("/proc/self/fd")


@dataclass
class Tree:
    base: Path  # holds the secrets next to ROOT
    root: Path
    files: FileRoot


class FakeClock:
    """A monotonic clock the test moves by hand, to hit or expire the resolution cache."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def build_tree(base: Path, clock: FakeClock | None = None) -> Tree:
    root = base / "root"
    (base / "secret.txt").write_bytes(SECRET)
    # Shares ROOT's name as a prefix: a bare startswith(root) check would let it through.
    (base / "root-evil").mkdir()
    (base / "root-evil" / "secret.txt").write_bytes(SECRET)
    (base / "outside").mkdir()
    (base / "outside" / "f.txt").write_bytes(SECRET)

    root.mkdir()
    (root / "hello.txt").write_bytes(b"hello world\n")
    (root / "a b.txt").write_bytes(b"spaced")
    (root / "café.txt").write_bytes(b"unicode")
    (root / "%2e%2e").write_bytes(b"literal percent")
    (root / "back\\slash.txt").write_bytes(b"backslash")
    (root / "sub").mkdir()
    (root / "sub" / "index.html").write_bytes(b"<h1>sub</h1>")
    (root / "sub" / "page.html").write_bytes(b"<p>page</p>")
    (root / "noindex").mkdir()
    (root / "dirindex" / "index.html").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_bytes(b"inside passwd")
    (root / "index-out").mkdir()

    (root / "link-in").symlink_to("hello.txt")
    (root / "link-in-sub").symlink_to("sub/page.html")
    (root / "link-out").symlink_to("../secret.txt")
    (root / "link-abs-out").symlink_to(base / "secret.txt")
    (root / "link-evil").symlink_to("../root-evil/secret.txt")
    (root / "link-loop").symlink_to("link-loop")
    (root / "dirlink-in").symlink_to("sub")
    (root / "dirlink-out").symlink_to("../outside")
    (root / "index-out" / "index.html").symlink_to("../../secret.txt")
    os.mkfifo(root / "fifo")
    return Tree(base, root, FileRoot(str(root), clock=clock or time.monotonic))


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return build_tree(tmp_path)


@pytest.fixture
def clocked(tmp_path: Path) -> tuple[Tree, FakeClock]:
    clock = FakeClock()
    return build_tree(tmp_path, clock), clock


@pytest.fixture(scope="module")
def static_tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return build_tree(tmp_path_factory.mktemp("static"))


def body(result: OpenFile | int) -> bytes:
    """The whole content of a successful open, closing it."""
    assert isinstance(result, OpenFile), f"expected a file, got status {result}"
    with result:
        return os.pread(result.fd, result.size + 1, 0)


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


# ------------------------------------------------------------------------- FileRoot setup


def test_root_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not a directory"):
        FileRoot(str(tmp_path / "missing"))
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(ValueError, match="is not a directory"):
        FileRoot(str(tmp_path / "file"))


@pytest.mark.parametrize("index", ["", "a/b", ".", ".."])
def test_index_must_be_a_plain_name(tmp_path: Path, index: str) -> None:
    with pytest.raises(ValueError, match="plain file name"):
        FileRoot(str(tmp_path), index=index)


def test_root_given_through_a_symlink(tree: Tree) -> None:
    alias = tree.base / "alias"
    alias.symlink_to(tree.root)
    served = FileRoot(str(alias))
    assert served.root == os.path.realpath(tree.root)
    assert body(served.open(b"/hello.txt")) == b"hello world\n"
    assert served.open(b"/link-out") == 404


# ------------------------------------------------------------------------- traversal table

LONG_SEGMENT = b"x" * 300

ATTACKS = [
    # Raw and percent-encoded dot-dot, in every case and mix.
    (b"/../secret.txt", 404),
    (b"/..", 404),
    (b"/../../../../../../etc/passwd", 404),
    (b"/sub/../../secret.txt", 404),
    (b"/sub/../../root/hello.txt", 404),  # climbs above ROOT even though it comes back
    (b"/%2e%2e/secret.txt", 404),
    (b"/%2e%2e", 404),
    (b"/%2E%2e/secret.txt", 404),
    (b"/%2E%2E/secret.txt", 404),
    (b"/.%2e/secret.txt", 404),
    (b"/%2e./secret.txt", 404),
    (b"/sub/%2e%2e/%2e%2e/secret.txt", 404),
    # Encoded slashes are decoded before normalising, so they are separators like any other.
    (b"/..%2fsecret.txt", 404),
    (b"/sub/..%2f..%2fsecret.txt", 404),
    (b"/%2f..%2fsecret.txt", 404),
    (b"/%2F..%2Fsecret.txt", 404),
    # Decoded once only: %252e is the three characters "%2e", a name that does not exist here.
    (b"/%252e%252e/secret.txt", 404),
    (b"/%252e%252e%252fsecret.txt", 404),
    # Absolute-path tricks resolve inside ROOT, where there is no such file.
    (b"//secret.txt", 404),
    (b"/%2fsecret.txt", 404),
    (b"/%2f%2e%2e%2fsecret.txt", 404),
    # A backslash is an ordinary file-name character on POSIX.
    (b"/..\\secret.txt", 404),
    (b"/..\\..\\secret.txt", 404),
    (b"/..%5csecret.txt", 404),
    (b"/..%5c..%5csecret.txt", 404),
    (b"/sub\\..\\..\\secret.txt", 404),
    (b"/..;/secret.txt", 404),
    # NUL, raw or encoded, and raw control characters.
    (b"/secret.txt%00.html", 400),
    (b"/hello.txt%00", 400),
    (b"/hello.txt\x00", 400),
    (b"/hello\n.txt", 400),
    (b"/hello.txt\x7f", 400),
    # Overlong and otherwise invalid UTF-8.
    (b"/%c0%ae%c0%ae/secret.txt", 400),
    (b"/%c0%afsecret.txt", 400),
    (b"/%e0%80%ae%e0%80%ae/secret.txt", 400),
    (b"/%ff", 400),
    (b"/%ed%a0%80", 400),  # an encoded UTF-16 surrogate
    (b"/\xff", 400),
    # Broken percent-encoding.
    (b"/%", 400),
    (b"/%2", 400),
    (b"/%zz", 400),
    (b"/%+1", 400),
    (b"/% 1", 400),
    (b"/%u002e%u002e/secret.txt", 400),
    # Not an origin-form path at all.
    (b"", 400),
    (b"*", 400),
    (b"secret.txt", 400),
    (b"../secret.txt", 400),
    (b"%2fsecret.txt", 400),
    (b"http://example.com/secret.txt", 400),
    # Very long paths.
    (b"/" + b"a/" * 5000, 404),
    (b"/" + b"%2e%2e/" * 3000 + b"secret.txt", 404),
    (b"/" + b"../" * 4000 + b"secret.txt", 404),
    (b"/sub/" + LONG_SEGMENT, 404),
    (b"/" + b"/".join([LONG_SEGMENT] * 20), 404),
    # Symlinks out of ROOT.
    (b"/link-out", 404),
    (b"/link-abs-out", 404),
    (b"/link-evil", 404),
    (b"/dirlink-out/f.txt", 404),
    (b"/dirlink-out/../secret.txt", 404),
    (b"/index-out/", 404),
    (b"/link-loop", 404),
]


@pytest.mark.parametrize(("raw_path", "status"), ATTACKS, ids=lambda v: repr(v)[:60])
def test_attack_is_refused(tree: Tree, raw_path: bytes, status: int) -> None:
    result = tree.files.open(raw_path)
    if isinstance(result, OpenFile):
        leaked = body(result)
        pytest.fail(f"{raw_path!r} opened a file: {leaked[:40]!r}")
    assert result == status


@pytest.mark.parametrize(
    ("raw_path", "content"),
    [
        (b"/hello.txt", b"hello world\n"),
        (b"/hello.txt?x=1", b"hello world\n"),
        (b"/hello.txt?x=/../../secret.txt", b"hello world\n"),
        (b"/hello.txt#frag", b"hello world\n"),
        (b"/./hello.txt", b"hello world\n"),
        (b"//hello.txt", b"hello world\n"),
        (b"/sub/../hello.txt", b"hello world\n"),
        (b"/sub/%2e%2e/hello.txt", b"hello world\n"),
        (b"/%68ello.txt", b"hello world\n"),
        (b"/a%20b.txt", b"spaced"),
        (b"/a b.txt", b"spaced"),  # a raw space is sloppy but unambiguous
        (b"/caf%c3%a9.txt", b"unicode"),
        (b"/caf%C3%A9.txt", b"unicode"),
        (b"/caf\xc3\xa9.txt", b"unicode"),
        (b"/%252e%252e", b"literal percent"),
        (b"/back\\slash.txt", b"backslash"),
        (b"/back%5cslash.txt", b"backslash"),
        # //etc/passwd and friends name ROOT/etc/passwd, never /etc/passwd.
        (b"//etc/passwd", b"inside passwd"),
        (b"/%2fetc%2fpasswd", b"inside passwd"),
        (b"/%2fetc/passwd", b"inside passwd"),
    ],
)
def test_path_is_decoded_and_served(tree: Tree, raw_path: bytes, content: bytes) -> None:
    assert body(tree.files.open(raw_path)) == content


# ------------------------------------------------------------------------- directories, types


@pytest.mark.parametrize(
    "raw_path", [b"/sub", b"/sub/", b"/sub/.", b"/sub//", b"/dirlink-in/", b"/sub/index.html"]
)
def test_directory_serves_its_index(tree: Tree, raw_path: bytes) -> None:
    result = tree.files.open(raw_path)
    assert isinstance(result, OpenFile)
    assert result.content_type == "text/html; charset=utf-8"
    assert body(result) == b"<h1>sub</h1>"


@pytest.mark.parametrize(
    "raw_path",
    [
        b"/",  # ROOT has no index.html
        b"/noindex",
        b"/noindex/",
        b"/dirindex/",  # its index.html is a directory
        b"/hello.txt/",  # a file named as a directory
        b"/hello.txt/.",
        b"/missing.txt",
        b"/sub/missing/",
        b"/hello.txt/x",  # ENOTDIR
        b"/fifo",  # not a regular file, and opening it must not block
    ],
)
def test_not_servable_is_404(tree: Tree, raw_path: bytes) -> None:
    assert tree.files.open(raw_path) == 404


def test_custom_index(tree: Tree) -> None:
    (tree.root / "noindex" / "default.htm").write_bytes(b"default")
    served = FileRoot(str(tree.root), index="default.htm")
    assert body(served.open(b"/noindex/")) == b"default"
    assert served.open(b"/sub/") == 404


def test_symlinks_inside_root_are_served(tree: Tree) -> None:
    assert body(tree.files.open(b"/link-in")) == b"hello world\n"
    assert body(tree.files.open(b"/link-in-sub")) == b"<p>page</p>"
    assert body(tree.files.open(b"/dirlink-in/page.html")) == b"<p>page</p>"


def test_content_type_comes_from_the_requested_name(tree: Tree) -> None:
    # As in nginx: a symlink named without an extension is served as bytes.
    result = tree.files.open(b"/link-in")
    assert isinstance(result, OpenFile)
    assert result.content_type == "application/octet-stream"
    result.close()


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("a.txt", "text/plain; charset=utf-8"),
        ("a.html", "text/html; charset=utf-8"),
        ("A.HTML", "text/html; charset=utf-8"),
        ("a.css", "text/css; charset=utf-8"),
        ("a.js", "text/javascript; charset=utf-8"),
        ("a.mjs", "text/javascript; charset=utf-8"),
        ("a.json", "application/json; charset=utf-8"),
        ("a.png", "image/png"),
        ("a.PNG", "image/png"),
        ("a.jpg", "image/jpeg"),
        ("a.svg", "image/svg+xml"),
        ("a.pdf", "application/pdf"),
        ("a.wasm", "application/wasm"),
        ("a.tar.gz", "application/gzip"),
        ("a.mp4", "video/mp4"),
        ("README", "application/octet-stream"),
        (".bashrc", "application/octet-stream"),
        ("a.unknownext", "application/octet-stream"),
    ],
)
def test_content_type_for(name: str, content_type: str) -> None:
    assert content_type_for(name) == content_type


# ------------------------------------------------------------------------- OpenFile


def test_open_file_metadata(tree: Tree) -> None:
    path = tree.root / "hello.txt"
    info = path.stat()
    result = tree.files.open(b"/hello.txt")
    assert isinstance(result, OpenFile)
    with result:
        assert result.size == 12
        assert result.mtime == info.st_mtime
        assert result.etag == f'"{info.st_ino:x}-{info.st_size:x}-{info.st_mtime_ns:x}"'
        assert result.last_modified == formatdate(info.st_mtime, usegmt=True)
        assert result.last_modified.endswith(" GMT")
        assert result.content_type == "text/plain; charset=utf-8"
        assert not os.get_inheritable(result.fd)  # O_CLOEXEC
        assert os.fstat(result.fd).st_ino == info.st_ino


def test_close_is_idempotent(tree: Tree) -> None:
    result = tree.files.open(b"/hello.txt")
    assert isinstance(result, OpenFile)
    fd = result.fd
    result.close()
    result.close()
    assert result.fd == -1
    with pytest.raises(OSError):
        os.fstat(fd)


def test_etag_changes_with_the_file(tree: Tree) -> None:
    first = tree.files.open(b"/hello.txt")
    assert isinstance(first, OpenFile)
    first.close()
    path = tree.root / "hello.txt"
    path.write_bytes(b"changed, and longer")
    os.utime(path, ns=(0, 1_000_000_000))
    second = tree.files.open(b"/hello.txt")
    assert isinstance(second, OpenFile)
    second.close()
    assert second.etag != first.etag
    assert second.size == 19
    assert second.last_modified == "Thu, 01 Jan 1970 00:00:01 GMT"


# ------------------------------------------------------------------------- permissions, errors


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root reads files whatever their mode, so chmod 000 cannot deny"
)
def test_unreadable_file_is_403(tree: Tree) -> None:
    path = tree.root / "hello.txt"
    path.chmod(0)
    try:
        assert tree.files.open(b"/hello.txt") == 403
    finally:
        path.chmod(0o644)


def _failing_open(
    monkeypatch: pytest.MonkeyPatch, suffix: str, code: int, times: int = 1_000_000
) -> None:
    """Make os.open fail with ``code`` for paths ending in ``suffix``, ``times`` times."""
    real_open = os.open
    left = [times]

    def fake_open(path: str, flags: int, mode: int = 0o777, **kwargs: object) -> int:
        if str(path).endswith(suffix) and left[0] > 0:
            left[0] -= 1
            raise OSError(code, os.strerror(code), path)
        return real_open(path, flags, mode, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", fake_open)


def test_eacces_maps_to_403(tree: Tree, monkeypatch: pytest.MonkeyPatch) -> None:
    # Works as root too: the errno mapping is what is under test here.
    _failing_open(monkeypatch, "hello.txt", errno.EACCES)
    assert tree.files.open(b"/hello.txt") == 403


def test_out_of_fds_is_503_and_not_cached(tree: Tree, monkeypatch: pytest.MonkeyPatch) -> None:
    _failing_open(monkeypatch, "hello.txt", errno.EMFILE, times=1)
    assert tree.files.open(b"/hello.txt") == 503
    assert body(tree.files.open(b"/hello.txt")) == b"hello world\n"


@pytest.mark.skipif(not HAS_PROC_FD, reason="needs /proc/self/fd")
def test_no_fd_leak(tree: Tree) -> None:
    paths = [
        b"/hello.txt",
        b"/sub/",
        b"/link-in",
        b"/missing",
        b"/../secret.txt",
        b"/link-out",
        b"/dirlink-out/f.txt",
        b"/fifo",
        b"/dirindex/",
        b"/%ff",
        b"/hello.txt/",
    ]
    before = fd_count()
    served = 0
    for i in range(500):
        result = tree.files.open(paths[i % len(paths)])
        if isinstance(result, OpenFile):
            served += 1
            result.close()
    assert served > 0
    assert fd_count() == before


@pytest.mark.skipif(not HAS_PROC_FD, reason="needs /proc/self/fd")
def test_no_fd_leak_when_a_cached_file_was_replaced(clocked: tuple[Tree, FakeClock]) -> None:
    t, _ = clocked
    before = fd_count()
    for i in range(200):
        # Each replacement makes the cached identity stale, so the fast path's fd is refused.
        (t.root / "new.txt").write_bytes(b"version %d" % i)
        (t.root / "new.txt").rename(t.root / "hello.txt")
        assert body(t.files.open(b"/hello.txt")) == b"version %d" % i
    assert fd_count() == before


@pytest.mark.skipif(not HAS_PROC_FD, reason="needs /proc/self/fd")
def test_no_fd_leak_when_races_are_caught(
    clocked: tuple[Tree, FakeClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    t, _ = clocked
    outside = str(t.base / "outside" / "f.txt")
    monkeypatch.setattr(FileRoot, "_resolve", lambda self, path: (outside, "text/plain"))
    before = fd_count()
    for _ in range(200):
        assert t.files.open(b"/anything") == 404
        t.files._paths.clear()
    assert fd_count() == before


# ------------------------------------------------------------------------- races and the cache


@pytest.mark.skipif(not HAS_PROC_FD, reason="the post-open check reads /proc/self/fd")
def test_race_between_resolution_and_open_is_caught(
    tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stands for a directory swapped for a symlink right after realpath() said "inside":
    # the path that gets opened is outside, and only the check on the fd can notice.
    outside = str(tree.base / "outside" / "f.txt")
    monkeypatch.setattr(FileRoot, "_resolve", lambda self, path: (outside, "text/plain"))
    assert tree.files.open(b"/hello.txt") == 404


def test_directory_swapped_for_escaping_symlink_after_caching(
    clocked: tuple[Tree, FakeClock],
) -> None:
    t, _ = clocked
    (t.root / "d").mkdir()
    (t.root / "d" / "f.txt").write_bytes(b"inside")
    assert body(t.files.open(b"/d/f.txt")) == b"inside"
    # Same path, now leading out of ROOT; the clock has not moved, so the entry is still fresh.
    (t.root / "d").rename(t.root / "d-old")
    (t.root / "d").symlink_to(t.base / "outside")
    assert t.files.open(b"/d/f.txt") == 404


def test_file_swapped_for_escaping_symlink_after_caching(
    clocked: tuple[Tree, FakeClock],
) -> None:
    t, _ = clocked
    assert body(t.files.open(b"/hello.txt")) == b"hello world\n"
    (t.root / "hello.txt").unlink()
    (t.root / "hello.txt").symlink_to(t.base / "secret.txt")
    assert t.files.open(b"/hello.txt") == 404


def test_atomic_replace_is_seen_at_once(clocked: tuple[Tree, FakeClock]) -> None:
    t, _ = clocked
    assert body(t.files.open(b"/hello.txt")) == b"hello world\n"
    (t.root / "new.txt").write_bytes(b"new version")
    (t.root / "new.txt").rename(t.root / "hello.txt")
    assert body(t.files.open(b"/hello.txt")) == b"new version"


def test_missing_file_is_noticed_after_the_ttl(clocked: tuple[Tree, FakeClock]) -> None:
    t, clock = clocked
    assert t.files.open(b"/late.txt") == 404
    (t.root / "late.txt").write_bytes(b"late")
    assert t.files.open(b"/late.txt") == 404  # the cached answer, for at most the TTL
    clock.now += 1.01
    assert body(t.files.open(b"/late.txt")) == b"late"


def test_retargeted_symlink_is_noticed_after_the_ttl(clocked: tuple[Tree, FakeClock]) -> None:
    t, clock = clocked
    assert body(t.files.open(b"/link-in")) == b"hello world\n"
    (t.root / "link-in").unlink()
    (t.root / "link-in").symlink_to("sub/page.html")
    # Within the TTL the old target, which is still inside ROOT, may be served.
    assert body(t.files.open(b"/link-in")) == b"hello world\n"
    clock.now += 1.01
    assert body(t.files.open(b"/link-in")) == b"<p>page</p>"


def test_symlink_retargeted_outside_is_refused_after_the_ttl(
    clocked: tuple[Tree, FakeClock],
) -> None:
    t, clock = clocked
    assert body(t.files.open(b"/link-in")) == b"hello world\n"
    (t.root / "link-in").unlink()
    (t.root / "link-in").symlink_to(t.base / "secret.txt")
    clock.now += 1.01
    assert t.files.open(b"/link-in") == 404


def test_cache_is_bounded(tree: Tree) -> None:
    for i in range(5000):
        assert tree.files.open(b"/missing-%d" % i) == 404
    assert 0 < len(tree.files._paths) <= 4096


def test_cache_ignores_the_query_and_skips_long_paths(tree: Tree) -> None:
    for i in range(10):
        body(tree.files.open(b"/hello.txt?v=%d" % i))
    assert list(tree.files._paths) == [b"/hello.txt"]
    long_path = b"/" + b"x/" * 600
    assert tree.files.open(long_path) == 404
    assert long_path not in tree.files._paths


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.sampled_from(
            [
                b"..",
                b"%2e%2e",
                b".%2E",
                b".",
                b"",
                b"%2f",
                b"\\",
                b"sub",
                b"dirlink-in",
                b"dirlink-out",
                b"link-in",
                b"link-out",
                b"link-evil",
                b"root",
                b"root-evil",
                b"outside",
                b"secret.txt",
                b"f.txt",
                b"hello.txt",
                b"page.html",
            ]
        ),
        max_size=8,
    )
)
def test_property_never_opens_outside_root(static_tree: Tree, segments: list[bytes]) -> None:
    result = static_tree.files.open(b"/" + b"/".join(segments))
    if isinstance(result, OpenFile):
        with result:
            where = os.readlink(f"/proc/self/fd/{result.fd}") if HAS_PROC_FD else ""
            assert os.pread(result.fd, 100, 0) != SECRET
        assert not HAS_PROC_FD or where.startswith(str(static_tree.root.resolve()) + "/")
    else:
        assert result in (400, 404)


# ------------------------------------------------------------------------- response planning

MTIME = 784111777.5  # Sun, 06 Nov 1994 08:49:37.5 GMT
LM = "Sun, 06 Nov 1994 08:49:37 GMT"
ETAG = '"abc-3e8-1"'
TEXT = "text/plain; charset=utf-8"


def make_file(size: int = 1000) -> OpenFile:
    # No real fd: planning never touches it.
    return OpenFile(-1, size, MTIME, ETAG, LM, TEXT)


def whole(size: int = 1000) -> dict[bytes, bytes]:
    return {
        b"content-length": str(size).encode(),
        b"content-type": TEXT.encode(),
        b"last-modified": LM.encode(),
        b"etag": ETAG.encode(),
        b"accept-ranges": b"bytes",
    }


def partial(first: int, last: int, size: int = 1000) -> dict[bytes, bytes]:
    headers = whole(size)
    headers[b"content-length"] = str(last - first + 1).encode()
    headers[b"content-range"] = f"bytes {first}-{last}/{size}".encode()
    return headers


def unsatisfiable(size: int = 1000) -> dict[bytes, bytes]:
    return {b"content-range": f"bytes */{size}".encode(), b"content-length": b"0"}


NOT_MODIFIED = {b"etag": ETAG.encode(), b"last-modified": LM.encode()}
FAILED = {b"content-length": b"0"}

Headers = list[tuple[bytes, bytes]]


def plan(method: bytes, headers: Headers, size: int = 1000) -> FilePlan:
    result = plan_file_response(method, headers, make_file(size))
    names = [name for name, _ in result.headers]
    assert len(names) == len(set(names)), "a header field is repeated"
    assert all(name == name.lower() for name in names)
    return result


def R(value: str) -> Headers:
    return [(b"range", value.encode())]


def fields(*pairs: tuple[str, str]) -> Headers:
    return [(name.encode(), value.encode()) for name, value in pairs]


OLDER = "Sun, 06 Nov 1994 08:49:36 GMT"  # one second before LM
WEAK = "W/" + ETAG
RANGE_0_9 = ("range", "bytes=0-9")
ALLOWED = {b"allow": b"GET, HEAD", b"content-length": b"0"}

# id, method, request fields, status, offset, length, response headers
PLANS: list[tuple[str, bytes, Headers, int, int, int, dict[bytes, bytes]]] = [
    ("get", b"GET", [], 200, 0, 1000, whole()),
    ("head", b"HEAD", [], 200, 0, 0, whole()),
    ("other-fields", b"GET", fields(("accept", "*/*"), (":path", "/x")), 200, 0, 1000, whole()),
    # Ranges.
    ("0-0", b"GET", R("bytes=0-0"), 206, 0, 1, partial(0, 0)),
    ("-1", b"GET", R("bytes=-1"), 206, 999, 1, partial(999, 999)),
    ("10-19", b"GET", R("bytes=10-19"), 206, 10, 10, partial(10, 19)),
    ("500-", b"GET", R("bytes=500-"), 206, 500, 500, partial(500, 999)),
    ("0-", b"GET", R("bytes=0-"), 206, 0, 1000, partial(0, 999)),
    ("999-999", b"GET", R("bytes=999-999"), 206, 999, 1, partial(999, 999)),
    ("end-clamped", b"GET", R("bytes=990-5000"), 206, 990, 10, partial(990, 999)),
    ("suffix-longer", b"GET", R("bytes=-5000"), 206, 0, 1000, partial(0, 999)),
    ("suffix-exact", b"GET", R("bytes=-1000"), 206, 0, 1000, partial(0, 999)),
    ("huge-last", b"GET", R("bytes=0-" + "9" * 40), 206, 0, 1000, partial(0, 999)),
    ("upper-unit", b"GET", R("BYTES=0-1"), 206, 0, 2, partial(0, 1)),
    ("spaces", b"GET", R("bytes= 0-1 "), 206, 0, 2, partial(0, 1)),
    ("empty-member", b"GET", R("bytes=0-1,"), 206, 0, 2, partial(0, 1)),
    ("leading-zeros", b"GET", R("bytes=0005-0006"), 206, 5, 2, partial(5, 6)),
    ("start-at-size", b"GET", R("bytes=1000-"), 416, 0, 0, unsatisfiable()),
    ("start-past", b"GET", R("bytes=1000-2000"), 416, 0, 0, unsatisfiable()),
    ("huge-first", b"GET", R("bytes=" + "9" * 40 + "-"), 416, 0, 0, unsatisfiable()),
    ("suffix-0", b"GET", R("bytes=-0"), 416, 0, 0, unsatisfiable()),
    # Ranges that are ignored: the whole file.
    ("backwards", b"GET", R("bytes=5-4"), 200, 0, 1000, whole()),
    ("garbage", b"GET", R("bytes=abc"), 200, 0, 1000, whole()),
    ("empty-set", b"GET", R("bytes="), 200, 0, 1000, whole()),
    ("dash-only", b"GET", R("bytes=-"), 200, 0, 1000, whole()),
    ("no-equals", b"GET", R("bytes 0-1"), 200, 0, 1000, whole()),
    ("other-unit", b"GET", R("items=0-1"), 200, 0, 1000, whole()),
    ("plus-sign", b"GET", R("bytes=+1-2"), 200, 0, 1000, whole()),
    ("two-dashes", b"GET", R("bytes=1-2-3"), 200, 0, 1000, whole()),
    ("negative", b"GET", R("bytes=-1-2"), 200, 0, 1000, whole()),
    ("multiple", b"GET", R("bytes=0-1,5-6"), 200, 0, 1000, whole()),
    ("multiple-bad", b"GET", R("bytes=0-1,x"), 200, 0, 1000, whole()),
    ("head-range", b"HEAD", R("bytes=0-0"), 200, 0, 0, whole()),
    ("repeated-range", b"GET", fields(RANGE_0_9, RANGE_0_9), 200, 0, 1000, whole()),
    # If-Range.
    ("if-range-etag", b"GET", fields(RANGE_0_9, ("if-range", ETAG)), 206, 0, 10, partial(0, 9)),
    ("if-range-stale", b"GET", fields(RANGE_0_9, ("if-range", '"old"')), 200, 0, 1000, whole()),
    ("if-range-weak", b"GET", fields(RANGE_0_9, ("if-range", WEAK)), 200, 0, 1000, whole()),
    ("if-range-date", b"GET", fields(RANGE_0_9, ("if-range", LM)), 206, 0, 10, partial(0, 9)),
    ("if-range-rfc850", b"GET", fields(RANGE_0_9, ("if-range", "Sunday, 06-Nov-94 08:49:37 GMT")),
     206, 0, 10, partial(0, 9)),
    ("if-range-older", b"GET", fields(RANGE_0_9, ("if-range", OLDER)), 200, 0, 1000, whole()),
    ("if-range-garbage", b"GET", fields(RANGE_0_9, ("if-range", "soon")), 200, 0, 1000, whole()),
    ("if-range-stale-416", b"GET", fields(("range", "bytes=5000-"), ("if-range", '"old"')),
     200, 0, 1000, whole()),
    ("if-range-alone", b"GET", fields(("if-range", '"old"')), 200, 0, 1000, whole()),
    # If-None-Match.
    ("inm-match", b"GET", fields(("if-none-match", ETAG)), 304, 0, 0, NOT_MODIFIED),
    ("inm-weak", b"GET", fields(("if-none-match", WEAK)), 304, 0, 0, NOT_MODIFIED),
    ("inm-star", b"GET", fields(("if-none-match", "*")), 304, 0, 0, NOT_MODIFIED),
    ("inm-list", b"GET", fields(("if-none-match", f'"x", W/"y" ,{ETAG}')), 304, 0, 0,
     NOT_MODIFIED),
    ("inm-repeated", b"GET", fields(("if-none-match", '"x"'), ("if-none-match", ETAG)),
     304, 0, 0, NOT_MODIFIED),
    ("inm-other", b"GET", fields(("if-none-match", '"x", W/"y"')), 200, 0, 1000, whole()),
    ("inm-unquoted", b"GET", fields(("if-none-match", ETAG.strip('"'))), 200, 0, 1000, whole()),
    ("inm-head", b"HEAD", fields(("if-none-match", ETAG)), 304, 0, 0, NOT_MODIFIED),
    ("inm-beats-range", b"GET", fields(RANGE_0_9, ("if-none-match", ETAG)), 304, 0, 0,
     NOT_MODIFIED),
    ("inm-miss-ignores-ims", b"GET", fields(("if-none-match", '"x"'), ("if-modified-since", LM)),
     200, 0, 1000, whole()),
    # If-Modified-Since.
    ("ims-equal", b"GET", fields(("if-modified-since", LM)), 304, 0, 0, NOT_MODIFIED),
    ("ims-newer", b"GET", fields(("if-modified-since", "Mon, 07 Nov 1994 00:00:00 GMT")),
     304, 0, 0, NOT_MODIFIED),
    ("ims-older", b"GET", fields(("if-modified-since", OLDER)), 200, 0, 1000, whole()),
    ("ims-garbage", b"GET", fields(("if-modified-since", "garbage")), 200, 0, 1000, whole()),
    ("ims-empty", b"GET", fields(("if-modified-since", "")), 200, 0, 1000, whole()),
    ("ims-future", b"GET", fields(("if-modified-since", "Fri, 01 Jan 2999 00:00:00 GMT")),
     200, 0, 1000, whole()),
    ("ims-asctime", b"GET", fields(("if-modified-since", "Sun Nov  6 08:49:37 1994")),
     304, 0, 0, NOT_MODIFIED),
    ("ims-rfc850", b"GET", fields(("if-modified-since", "Sunday, 06-Nov-94 08:49:37 GMT")),
     304, 0, 0, NOT_MODIFIED),
    ("ims-repeated", b"GET", fields(("if-modified-since", LM), ("if-modified-since", LM)),
     200, 0, 1000, whole()),
    ("ims-head", b"HEAD", fields(("if-modified-since", LM)), 304, 0, 0, NOT_MODIFIED),
    ("ims-beats-range", b"GET", fields(RANGE_0_9, ("if-modified-since", LM)), 304, 0, 0,
     NOT_MODIFIED),
    # If-Match and If-Unmodified-Since.
    ("im-match", b"GET", fields(("if-match", ETAG)), 200, 0, 1000, whole()),
    ("im-star", b"GET", fields(("if-match", "*")), 200, 0, 1000, whole()),
    ("im-list", b"GET", fields(("if-match", f'"x", {ETAG}')), 200, 0, 1000, whole()),
    ("im-other", b"GET", fields(("if-match", '"x"')), 412, 0, 0, FAILED),
    ("im-weak", b"GET", fields(("if-match", WEAK)), 412, 0, 0, FAILED),
    ("im-then-range", b"GET", fields(RANGE_0_9, ("if-match", ETAG)), 206, 0, 10, partial(0, 9)),
    ("im-fails-before-inm", b"GET", fields(("if-match", '"x"'), ("if-none-match", ETAG)),
     412, 0, 0, FAILED),
    ("ius-older", b"GET", fields(("if-unmodified-since", OLDER)), 412, 0, 0, FAILED),
    ("ius-equal", b"GET", fields(("if-unmodified-since", LM)), 200, 0, 1000, whole()),
    ("ius-garbage", b"GET", fields(("if-unmodified-since", "soon")), 200, 0, 1000, whole()),
    ("im-overrides-ius", b"GET", fields(("if-match", ETAG), ("if-unmodified-since", OLDER)),
     200, 0, 1000, whole()),
    # Field names arrive lowercase from h2, but any case is understood.
    ("name-case", b"GET", fields(("Range", "bytes=0-0")), 206, 0, 1, partial(0, 0)),
    # Other methods.
    ("post", b"POST", [], 405, 0, 0, ALLOWED),
    ("lowercase-get", b"get", [], 405, 0, 0, ALLOWED),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "headers", "status", "offset", "length", "response"),
    [pytest.param(*row[1:], id=row[0]) for row in PLANS],
)
def test_plan(
    method: bytes,
    headers: Headers,
    status: int,
    offset: int,
    length: int,
    response: dict[bytes, bytes],
) -> None:
    result = plan(method, headers)
    assert (result.status, result.offset, result.length) == (status, offset, length)
    assert dict(result.headers) == response


@pytest.mark.parametrize("value", ["bytes=0-0", "bytes=-1", "bytes=0-", "bytes=-0", "bytes=5-9"])
def test_range_of_empty_file_is_416(value: str) -> None:
    result = plan(b"GET", R(value), size=0)
    assert (result.status, result.offset, result.length) == (416, 0, 0)
    assert dict(result.headers) == unsatisfiable(0)


def test_empty_file_without_range() -> None:
    result = plan(b"GET", [], size=0)
    assert (result.status, result.offset, result.length) == (200, 0, 0)
    assert dict(result.headers)[b"content-length"] == b"0"


def test_plan_accepts_a_mapping() -> None:
    result = plan_file_response(b"GET", {b"range": b"bytes=0-9"}, make_file())
    assert (result.status, result.offset, result.length) == (206, 0, 10)


def test_allow() -> None:
    assert allow_header() == ALLOW == (b"allow", b"GET, HEAD")


def test_plan_with_a_real_file(tree: Tree) -> None:
    opened = tree.files.open(b"/hello.txt")
    assert isinstance(opened, OpenFile)
    with opened:
        fresh = plan_file_response(b"GET", [], opened)
        assert fresh.status == 200
        assert dict(fresh.headers)[b"etag"] == opened.etag.encode()
        assert os.pread(opened.fd, fresh.length, fresh.offset) == b"hello world\n"
        cached = fields(("if-none-match", opened.etag))
        assert plan_file_response(b"GET", cached, opened).status == 304
        dated = fields(("if-modified-since", opened.last_modified))
        assert plan_file_response(b"GET", dated, opened).status == 304
        ranged = plan_file_response(b"GET", R("bytes=-6"), opened)
        assert os.pread(opened.fd, ranged.length, ranged.offset) == b"world\n"


def test_mtime_is_compared_in_whole_seconds() -> None:
    stamp = calendar.timegm((1994, 11, 6, 8, 49, 37))
    assert MTIME - stamp == 0.5  # the fraction must not make the file look newer
    assert plan(b"GET", fields(("if-modified-since", LM))).status == 304


def _content_range(result: FilePlan) -> tuple[int, int, int]:
    value = dict(result.headers)[b"content-range"].decode()
    unit, _, rest = value.partition(" ")
    span, _, size = rest.partition("/")
    first, _, last = span.partition("-")
    assert unit == "bytes"
    return int(first), int(last), int(size)


@settings(max_examples=500)
@given(st.data())
def test_property_range_plan_stays_in_the_file(data: st.DataObject) -> None:
    size = data.draw(st.integers(min_value=1, max_value=1 << 40), label="size")
    first = data.draw(st.integers(min_value=0, max_value=size - 1), label="first")
    last = data.draw(
        st.one_of(st.none(), st.integers(min_value=first, max_value=2 * size)), label="last"
    )
    spec = f"bytes={first}-" + ("" if last is None else str(last))
    result = plan(b"GET", R(spec), size=size)
    end = size - 1 if last is None else min(last, size - 1)
    assert result.status == 206
    assert (result.offset, result.length) == (first, end - first + 1)
    assert _content_range(result) == (result.offset, result.offset + result.length - 1, size)
    assert dict(result.headers)[b"content-length"] == str(result.length).encode()
    assert result.offset >= 0 and result.offset + result.length <= size


@settings(max_examples=300)
@given(st.integers(min_value=1, max_value=1 << 40), st.data())
def test_property_suffix_and_unsatisfiable(size: int, data: st.DataObject) -> None:
    suffix = data.draw(st.integers(min_value=1, max_value=2 * size), label="suffix")
    result = plan(b"GET", R(f"bytes=-{suffix}"), size=size)
    assert result.status == 206
    assert result.length == min(suffix, size)
    assert result.offset + result.length == size
    assert _content_range(result) == (result.offset, size - 1, size)

    beyond = data.draw(st.integers(min_value=size, max_value=4 * size), label="beyond")
    refused = plan(b"GET", R(f"bytes={beyond}-"), size=size)
    assert (refused.status, refused.length) == (416, 0)
    assert dict(refused.headers)[b"content-range"] == f"bytes */{size}".encode()


@settings(max_examples=500, deadline=None)
@given(seconds=st.floats(min_value=0, max_value=253402300799, allow_nan=False))
def test_http_date_is_imf_fixdate_as_email_utils_writes_it(seconds: float) -> None:
    assert http_date(seconds) == formatdate(seconds, usegmt=True)
