"""Serving a file from ROOT, as pure logic: no sockets, no asyncio.

This module owns two decisions. ``FileRoot.open`` turns a raw ``:path`` into an open fd that
is provably a regular file inside ROOT, or into the HTTP status explaining why not.
``plan_file_response`` turns the request's conditional and Range fields into the status,
headers and byte span of the response (RFC 9110 §13 and §14). The server core sends what the
plan says and adds ``:status``, ``date`` and ``server`` itself.

ROOT is trusted: the operator owns it. Symlinks are followed only while they stay inside
ROOT, but a hard link to a file outside ROOT cannot be told apart from the file itself by any
path check, so whoever can create hard links inside ROOT can publish what they can read.
"""

from __future__ import annotations

import errno
import math
import mimetypes
import os
import re
import stat
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple, Protocol

ALLOW: tuple[bytes, bytes] = (b"allow", b"GET, HEAD")

# Cache sizing: one benchmark-sized working set fits, and clearing when full is cheaper than
# LRU bookkeeping on every request.
_CACHE_MAX = 4096
# Raw paths longer than this are resolved every time, so the cache holds at most ~4 MiB.
_CACHEABLE_PATH = 1024
# Linux PATH_MAX. A raw path over three times this (every byte percent-encoded) could only
# name a file through piles of dot segments or slashes, which no honest client sends.
_PATH_MAX = 4096
# O_NOFOLLOW: the cached resolution is symlink-free, so a symlink now in the final place was
# swapped in since. O_NONBLOCK: opening a FIFO must not block the event loop (it is ignored
# for regular files). O_NOCTTY: a terminal device in ROOT must not become ours.
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
_PROC_FD = "/proc/self/fd"

_DEFAULT_TYPE = "application/octet-stream"
# What Python's built-in table lacks or has outdated. RFC 9239 made text/javascript the one
# JavaScript type; compressed files are served as themselves, never with content-encoding.
_EXTRA_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".md": "text/markdown",
    ".wasm": "application/wasm",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".gz": "application/gzip",
    ".tgz": "application/gzip",
    ".bz2": "application/x-bzip2",
    ".xz": "application/x-xz",
    ".zst": "application/zstd",
}
_UTF8_APPLICATION_TYPES = frozenset({"application/json", "application/javascript"})

# Every hex pair, in any case, mapped to its byte: one dict lookup both validates and decodes.
_HEX_DIGITS = "0123456789abcdefABCDEF"
_UNHEX = {(a + b).encode(): int(a + b, 16) for a in _HEX_DIGITS for b in _HEX_DIGITS}
# Raw control bytes are never part of a valid request target; a file whose name holds one is
# still reachable percent-encoded (except NUL, which no file name can hold).
_RAW_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")

# Request fields plan_file_response reads; all others are skipped with one set lookup.
_LIST_FIELDS = frozenset({b"if-match", b"if-none-match"})
_SINGLE_FIELDS = frozenset(
    {b"if-modified-since", b"if-unmodified-since", b"if-range", b"range"},
)
_PLAN_FIELDS = _LIST_FIELDS | _SINGLE_FIELDS
# Larger than any file; longer digit strings are clamped to it instead of parsed.
_HUGE = 10**18


def allow_header() -> tuple[bytes, bytes]:
    """The ``allow`` field for a 405 response to a method other than GET or HEAD."""
    return ALLOW


class OpenFile:
    """A regular file inside ROOT, opened for reading; owns ``fd`` until ``close``."""

    __slots__ = (
        "_content_type_b",
        "_etag_b",
        "_last_modified_b",
        "content_type",
        "etag",
        "fd",
        "last_modified",
        "mtime",
        "size",
    )

    def __init__(
        self,
        fd: int,
        size: int,
        mtime: float,
        etag: str,
        last_modified: str,
        content_type: str,
    ) -> None:
        self.fd = fd
        self.size = size
        self.mtime = mtime
        self.etag = etag
        self.last_modified = last_modified
        self.content_type = content_type
        # Header values as the wire needs them, encoded once per open instead of per use.
        self._etag_b = etag.encode("ascii")
        self._last_modified_b = last_modified.encode("ascii")
        self._content_type_b = content_type.encode("ascii")

    def whole_plan(self, method: bytes) -> FilePlan:
        """The plan for the whole file, GET or HEAD, with no condition or range asked."""
        return _whole_plan(method, self)

    def close(self) -> None:
        """Close the fd; later calls do nothing, and a stale ``fd`` of -1 fails loudly."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> OpenFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Target(NamedTuple):
    """A cached resolution: where the path led, and which file the kernel said was there.

    ``dev``/``ino``/``ctime_ns`` identify the file that was opened and proven inside ROOT.
    A later open of ``real`` that yields the same identity is that same file, not renamed or
    relinked since (either changes ctime), so it needs no second /proc check.
    """

    real: str
    content_type: str
    dev: int
    ino: int
    ctime_ns: int


class ContentCache(Protocol):
    """Where ``FileRoot.open`` may keep small files' bytes (smallfiles.py)."""

    def get(self, real: str, dev: int, ino: int, ctime_ns: int) -> OpenFile | None: ...

    def keep(self, real: str, opened: OpenFile, st: os.stat_result) -> OpenFile | None: ...


class FileRoot:
    """The directory tree being served, with the caches that keep ``open`` to a few syscalls."""

    __slots__ = (
        "_clock",
        "_index",
        "_meta",
        "_paths",
        "_prefix",
        "_proc_fd",
        "_ttl",
        "content",
        "root",
    )

    def __init__(
        self,
        root: str,
        index: str = "index.html",
        *,
        ttl: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        real = os.path.realpath(root)
        if not os.path.isdir(real):
            raise ValueError(f"root {root!r} is not a directory")
        if not index or "/" in index or index in (".", ".."):
            raise ValueError(f"index {index!r} must be a plain file name")
        self.root = real
        # Containment is a prefix test; the trailing slash keeps /srv/www-evil out of /srv/www.
        self._prefix = real if real.endswith("/") else real + "/"
        self._index = index
        # ttl bounds how long a renamed file or retargeted symlink keeps its old answer.
        self._ttl = ttl
        self._clock = clock
        self._paths: dict[bytes, tuple[float, _Target | int]] = {}
        self._meta: dict[tuple[int, int, int], tuple[str, str]] = {}
        # Without /proc (not Linux) the post-open check is skipped and the resolution-time
        # check stands alone: an attacker racing renames inside ROOT could then escape it.
        self._proc_fd = os.path.isdir(_PROC_FD)
        # Small files' bytes, for the callers that can serve them from memory (open's
        # ``content_ok``); None keeps every answer an open fd.
        self.content: ContentCache | None = None

    def open(self, raw_path: bytes, content_ok: bool = False) -> OpenFile | int:
        """Open the file ``raw_path`` names, or return 400, 403, 404 or 503.

        With ``content_ok`` the answer may be a file kept in memory by ``self.content`` (an
        OpenFile whose ``fd`` is -1), for a path resolved within the time-to-live.
        """
        path = _strip_query(raw_path) if b"?" in raw_path or b"#" in raw_path else raw_path
        now = self._clock()
        entry = self._paths.get(path)
        if entry is not None and entry[0] > now:
            target = entry[1]
            if isinstance(target, int):
                return target
            content = self.content if content_ok else None
            if content is not None:
                kept = content.get(target.real, target.dev, target.ino, target.ctime_ns)
                if kept is not None:
                    return kept
            opened = self._reopen(target, content)
            if opened is not None:
                return opened
            # The tree changed under the cached decision (rename, symlink swap): decide afresh.
        return self._open_fresh(path, now)

    def directory(self, raw_path: bytes) -> tuple[str, list[str]] | None:
        """The real directory ``raw_path`` names inside ROOT and its segments, for a listing.

        Asked only after ``open`` failed (no index), so it costs nothing on the file path.
        None for anything else, and for a hidden directory (a segment starting with a dot),
        which is never listed.
        """
        text = _decode_path(_strip_query(raw_path))
        if isinstance(text, int):
            return None
        normalised = _normalise(text)
        if normalised is None or any(part.startswith(".") for part in normalised[0]):
            return None
        parts = normalised[0]
        real = self._realpath_inside(os.path.join(self.root, *parts))
        if real is None or not os.path.isdir(real):
            return None
        return real, parts

    def inside(self, path: str) -> bool:
        """Whether ``path`` resolves (symlinks followed) to ROOT or below it."""
        return self._realpath_inside(path) is not None

    def _reopen(self, target: _Target, content: ContentCache | None = None) -> OpenFile | None:
        """The fast path: open the cached real path and accept only the file proven before
        (and keep its bytes in ``content`` if that takes them)."""
        opened = _open_stat(target.real)
        if isinstance(opened, int):
            return None
        fd, st = opened
        if (
            st.st_ino == target.ino
            and st.st_dev == target.dev
            and st.st_ctime_ns == target.ctime_ns
            # An inode number can be reused by a file of another type once freed.
            and stat.S_ISREG(st.st_mode)
        ):
            wrapped = self._wrap(fd, st, target.content_type)
            if content is not None:
                kept = content.keep(target.real, wrapped, st)
                if kept is not None:
                    wrapped.close()
                    return kept
            return wrapped
        os.close(fd)
        return None

    def _open_fresh(self, path: bytes, now: float) -> OpenFile | int:
        """The slow path: resolve, open, prove the fd inside ROOT, and cache the outcome."""
        resolved = self._resolve(path)
        if isinstance(resolved, int):
            self._remember(path, resolved, now)
            return resolved
        real, content_type = resolved
        opened = _open_stat(real)
        if isinstance(opened, int):
            self._remember(path, opened, now)
            return opened
        fd, st = opened
        if not (stat.S_ISREG(st.st_mode) and self._fd_inside(fd)):
            os.close(fd)
            self._remember(path, 404, now)
            return 404
        target = _Target(real, content_type, st.st_dev, st.st_ino, st.st_ctime_ns)
        self._remember(path, target, now)
        return self._wrap(fd, st, content_type)

    def _remember(self, path: bytes, target: _Target | int, now: float) -> None:
        # A 503 (out of fds) is our momentary state, not a fact about the path.
        if len(path) > _CACHEABLE_PATH or (isinstance(target, int) and target >= 500):
            return
        if len(self._paths) >= _CACHE_MAX:
            self._paths.clear()
        self._paths[path] = (now + self._ttl, target)

    def _resolve(self, path: bytes) -> tuple[str, str] | int:
        """Decide which real file ``path`` names, checking every step stays inside ROOT.

        Returns the symlink-free path and the content type the request name implies.
        """
        text = _decode_path(path)
        if isinstance(text, int):
            return text
        normalised = _normalise(text)
        if normalised is None:
            return 404
        parts, want_dir = normalised
        real = self._realpath_inside(os.path.join(self.root, *parts))
        if real is None:
            return 404
        try:
            mode = os.stat(real).st_mode
        except OSError as exc:
            return _status_for(exc)
        if stat.S_ISDIR(mode):
            # The index may itself be a symlink, so it gets its own containment check; whether
            # it is a regular file is checked on the opened fd.
            index = self._realpath_inside(os.path.join(real, self._index))
            return 404 if index is None else (index, content_type_for(self._index))
        # Refusing FIFOs and devices here means they are not even opened.
        if want_dir or not stat.S_ISREG(mode):
            return 404
        return real, content_type_for(parts[-1])

    def _realpath_inside(self, path: str) -> str | None:
        try:
            real = os.path.realpath(path)
        except (OSError, ValueError):
            return None
        return real if real.startswith(self._prefix) or real == self.root else None

    def _fd_inside(self, fd: int) -> bool:
        """Whether the kernel's own name for the opened file lies inside ROOT.

        ``_resolve`` checked the path, but a directory on the way may have been swapped for a
        symlink out of ROOT before the open; only the opened fd tells the truth.
        """
        if not self._proc_fd:
            return True
        try:
            where = os.readlink(f"{_PROC_FD}/{fd}")
        except OSError:
            return False
        return where.startswith(self._prefix)

    def _wrap(self, fd: int, st: os.stat_result, content_type: str) -> OpenFile:
        """Hand ``fd`` to an OpenFile; closes it if that fails, so it never leaks."""
        try:
            # Keyed by what the validators are computed from, so an entry can never go stale.
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
            validators = self._meta.get(key)
            if validators is None:
                if len(self._meta) >= _CACHE_MAX:
                    self._meta.clear()
                validators = self._meta[key] = _validators(st)
            etag, last_modified = validators
            return OpenFile(fd, st.st_size, st.st_mtime, etag, last_modified, content_type)
        except BaseException:
            os.close(fd)
            raise


def _open_stat(real: str) -> tuple[int, os.stat_result] | int:
    """``os.open`` and ``os.fstat`` of ``real``, or the status its failure means."""
    try:
        fd = os.open(real, _OPEN_FLAGS)
    except OSError as exc:
        return _status_for(exc)
    try:
        return fd, os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise


def _strip_query(raw: bytes) -> bytes:
    # Query and fragment never name a file. Dropping them before the cache lookup also keeps
    # cache-busting queries (?v=123) from evicting everyone else's entries.
    if b"?" in raw:
        raw = raw[: raw.index(b"?")]
    if b"#" in raw:
        raw = raw[: raw.index(b"#")]
    return raw


def _decode_path(path: bytes) -> str | int:
    """Percent-decode ``path`` exactly once into text, or return 400 (404 if absurdly long)."""
    if not path.startswith(b"/"):
        return 400
    if len(path) > 3 * _PATH_MAX:
        return 404
    if _RAW_CONTROL.search(path):
        return 400
    decoded = _percent_decode(path)
    if decoded is None or b"\x00" in decoded:
        return 400
    try:
        # Strict UTF-8 also refuses overlong forms such as %c0%ae, a classic disguised dot.
        return decoded.decode("utf-8")
    except UnicodeDecodeError:
        return 400


def _percent_decode(path: bytes) -> bytes | None:
    """Decode every %XX once; None when a '%' is not followed by two hex digits."""
    if b"%" not in path:
        return path
    head, *pieces = path.split(b"%")
    out = bytearray(head)
    for piece in pieces:
        byte = _UNHEX.get(piece[:2])
        if byte is None:
            return None
        out.append(byte)
        out += piece[2:]
    return bytes(out)


def _normalise(path: str) -> tuple[list[str], bool] | None:
    """Split into plain segments, removing ``.``, ``..`` and empty ones (RFC 3986 §5.2.4).

    Runs after decoding, so %2e%2e and %2f are handled like the characters they encode.
    Returns None when ``..`` would climb above ROOT, and whether the path names a directory.
    """
    segments = path.split("/")
    parts: list[str] = []
    for segment in segments:
        if segment == "..":
            if not parts:
                return None
            parts.pop()
        elif segment and segment != ".":
            parts.append(segment)
    return parts, segments[-1] in ("", ".", "..")


def _status_for(exc: OSError) -> int:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return 403
    # Out of descriptors or memory is our overload, not the client's mistake.
    if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM):
        return 503
    # ENOENT, ENOTDIR, ELOOP, ENAMETOOLONG, ENXIO (a socket) all mean: nothing to serve here.
    return 404


def _validators(st: os.stat_result) -> tuple[str, str]:
    """The strong etag and IMF-fixdate Last-Modified of a file in state ``st``."""
    etag = f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'
    return etag, http_date(st.st_mtime)


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(seconds: float) -> str:
    """IMF-fixdate (RFC 9110 section 5.6.7), in English whatever the locale."""
    t = time.gmtime(seconds)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def _with_charset(content_type: str) -> str:
    # Text is assumed UTF-8, as most servers are configured; without a charset browsers guess.
    if (
        content_type.startswith("text/")
        or content_type in _UTF8_APPLICATION_TYPES
        or content_type.endswith("+json")
    ):
        return content_type + "; charset=utf-8"
    return content_type


def _build_type_table() -> dict[str, str]:
    # A fresh MimeTypes holds only Python's built-in table, not /etc/mime.types, so the
    # answer does not depend on the host.
    db = mimetypes.MimeTypes()
    table = {**db.types_map[False], **db.types_map[True], **_EXTRA_TYPES}
    return {ext.lower(): _with_charset(kind) for ext, kind in table.items()}


_TYPES = _build_type_table()


def content_type_for(name: str) -> str:
    """The content type the file name's extension implies (case-insensitive)."""
    return _TYPES.get(os.path.splitext(name)[1].lower(), _DEFAULT_TYPE)


# ---------------------------------------------------------------------------- planning


@dataclass(frozen=True, slots=True)
class FilePlan:
    """What to send: ``length`` body bytes of the file from ``offset`` (0 for HEAD, 304, ...).

    ``headers`` are lowercase and exclude ``:status``, ``date`` and ``server``. For HEAD the
    content-length field still carries the size a GET would send.
    """

    status: int
    headers: list[tuple[bytes, bytes]]
    offset: int
    length: int


def plan_file_response(
    method: bytes,
    request_headers: Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]],
    f: OpenFile,
) -> FilePlan:
    """Plan the response to GET or HEAD of ``f`` (405 for any other method)."""
    if method != b"GET" and method != b"HEAD":
        return FilePlan(405, [ALLOW, (b"content-length", b"0")], 0, 0)
    fields = _plan_fields(request_headers)
    if fields:
        status = _precondition_status(fields, f)
        if status == 304:
            # Validators only: a 304 describes the cached copy, it has no body of its own.
            headers = [(b"etag", f._etag_b), (b"last-modified", f._last_modified_b)]
            return FilePlan(304, headers, 0, 0)
        if status == 412:
            return FilePlan(412, [(b"content-length", b"0")], 0, 0)
        if method == b"GET" and b"range" in fields and _if_range_holds(fields, f):
            plan = _range_plan(fields[b"range"], f)
            if plan is not None:
                return plan
    return f.whole_plan(method)


def _plan_fields(
    headers: Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]],
) -> dict[bytes, bytes]:
    """The request fields planning reads, with repeats combined the way RFC 9110 §5.3 says."""
    # An exchange's fields are a list with lowercase names: the usual field costs a set
    # lookup and an islower, no new bytes (this runs for every file served).
    if type(headers) is list:
        pairs: Iterable[tuple[bytes, bytes]] = headers
    else:
        pairs = headers.items() if isinstance(headers, Mapping) else headers
    found: dict[bytes, bytes] = {}
    for raw_name, raw_value in pairs:
        if raw_name in _PLAN_FIELDS:
            name = raw_name
        elif raw_name.islower():
            continue
        else:
            name = raw_name.lower()
            if name not in _PLAN_FIELDS:
                continue
        value = raw_value.strip()
        previous = found.get(name)
        if previous is None:
            found[name] = value
        elif name in _LIST_FIELDS:
            found[name] = previous + b", " + value
        else:
            # A repeated singleton is invalid; empty makes each parser ignore it.
            found[name] = b""
    return found


def _precondition_status(fields: Mapping[bytes, bytes], f: OpenFile) -> int:
    """304 or 412 when a precondition decides the response, else 0 (RFC 9110 §13.2.2 order)."""
    if_match = fields.get(b"if-match")
    if if_match is not None:
        if not _etag_listed(if_match, f._etag_b, weak=False):
            return 412
    else:
        since = fields.get(b"if-unmodified-since")
        if since is not None and _modified_since(since, f) is True:
            return 412
    if_none_match = fields.get(b"if-none-match")
    if if_none_match is not None:
        # Only GET and HEAD get here, for which a match means 304 rather than 412.
        return 304 if _etag_listed(if_none_match, f._etag_b, weak=True) else 0
    since = fields.get(b"if-modified-since")
    if since is not None and _modified_since(since, f) is False:
        return 304
    return 0


def _etag_listed(value: bytes, etag: bytes, *, weak: bool) -> bool:
    """Whether the If-Match/If-None-Match list holds ``*`` or ``etag``.

    Our etag is always strong, so strong comparison is byte equality with an unprefixed
    member, and weak comparison just drops a member's W/ first.
    """
    for member in value.split(b","):
        tag = member.strip()
        if tag == b"*":
            return True
        if weak and tag.startswith(b"W/"):
            tag = tag[2:]
        if tag == etag:
            return True
    return False


def _modified_since(value: bytes, f: OpenFile) -> bool | None:
    """Whether ``f`` changed after the HTTP-date ``value``; None if the date is unusable.

    Dates in the future are unusable too (RFC 9110 §13.1.3): a client clock ahead of ours
    must not pin a stale copy.
    """
    if value == f._last_modified_b:
        return False  # the common revalidation, without parsing
    date = _parse_http_date(value)
    if date is None or date > time.time():
        return None
    return _whole_seconds(f.mtime) > date


def _parse_http_date(value: bytes) -> int | None:
    """Seconds since the epoch of an IMF-fixdate, RFC 850 or asctime date; None if invalid."""
    # Here, not at import: email.utils and calendar cost over 1 MiB of every worker's memory,
    # and only conditional requests need them.
    import calendar
    from email.utils import parsedate_tz

    try:
        parts = parsedate_tz(value.decode("latin-1"))
        if parts is None:
            return None
        # Not mktime_tz: a date without a zone would be read as local time, HTTP means GMT.
        return calendar.timegm(parts[:6]) - (parts[9] or 0)
    except (ValueError, TypeError, IndexError, OverflowError):
        return None


def _whole_seconds(mtime: float) -> int:
    # HTTP dates have whole seconds; Last-Modified was formatted from the floor too.
    return math.floor(mtime)


def _if_range_holds(fields: Mapping[bytes, bytes], f: OpenFile) -> bool:
    """Whether the Range field may be honoured given If-Range (RFC 9110 §13.1.5)."""
    validator = fields.get(b"if-range")
    if validator is None:
        return True
    if validator.startswith((b'"', b"W/")):
        # Strong comparison: a weak tag never matches, and then the whole file is sent.
        return validator == f._etag_b
    if validator == f._last_modified_b:
        return True
    date = _parse_http_date(validator)
    return date is not None and date == _whole_seconds(f.mtime)


def _range_plan(value: bytes, f: OpenFile) -> FilePlan | None:
    """206 or 416 for a single byte range; None to ignore the field and send the whole file."""
    spec = parse_byte_range(value)
    if spec is None:
        return None
    span = satisfiable_span(spec, f.size)
    if span is None:
        headers = [(b"content-range", f"bytes */{f.size}".encode()), (b"content-length", b"0")]
        return FilePlan(416, headers, 0, 0)
    first, last = span
    length = last - first + 1
    headers = [
        (b"content-range", f"bytes {first}-{last}/{f.size}".encode()),
        (b"content-length", str(length).encode()),
        (b"content-type", f._content_type_b),
        (b"last-modified", f._last_modified_b),
        (b"etag", f._etag_b),
        (b"accept-ranges", b"bytes"),
    ]
    return FilePlan(206, headers, first, length)


def parse_byte_range(value: bytes) -> tuple[int | None, int | None] | None:
    """``bytes=a-b`` as (a, b), ``bytes=a-`` as (a, None), ``bytes=-n`` as (None, n).

    None for anything else: bad syntax, another unit, or several ranges, which we may answer
    with the whole file (RFC 9110 §14.2) rather than multipart/byteranges.
    """
    unit, equals, range_set = value.partition(b"=")
    if not equals or unit.lower() != b"bytes":
        return None
    specs = [spec for spec in (member.strip() for member in range_set.split(b",")) if spec]
    if len(specs) != 1:
        return None
    first_text, dash, last_text = specs[0].partition(b"-")
    if not dash:
        return None
    if not first_text:
        return (None, _digits(last_text)) if last_text.isdigit() else None
    if not first_text.isdigit() or (last_text and not last_text.isdigit()):
        return None
    first = _digits(first_text)
    last = _digits(last_text) if last_text else None
    if last is not None and last < first:
        return None
    return first, last


def _digits(text: bytes) -> int:
    # Clamped rather than parsed: a thousand-digit position must cost nothing and cannot
    # overflow int-from-string limits.
    significant = text.lstrip(b"0")
    return int(significant or b"0") if len(significant) <= 18 else _HUGE


def satisfiable_span(spec: tuple[int | None, int | None], size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) the range selects in a file of ``size``; None if none."""
    first, last = spec
    if size == 0:
        return None
    if first is None:
        # A suffix: the last n bytes, or the whole file when n exceeds it; n = 0 selects none.
        if not last:
            return None
        return max(size - last, 0), size - 1
    if first >= size:
        return None
    return first, size - 1 if last is None else min(last, size - 1)


def _whole_plan(method: bytes, f: OpenFile) -> FilePlan:
    headers = [
        (b"content-length", str(f.size).encode()),
        (b"content-type", f._content_type_b),
        (b"last-modified", f._last_modified_b),
        (b"etag", f._etag_b),
        (b"accept-ranges", b"bytes"),
    ]
    return FilePlan(200, headers, 0, f.size if method == b"GET" else 0)
