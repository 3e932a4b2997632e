"""The directory listing: what ``/`` shows when a directory has no ``index.html``.

Off by default (``--directory-listing``), as in nginx and h2o: a listing publishes every name
in a directory, which the operator should choose. When it is off, the 404 (or 403) for such a
directory says how to turn it on, since that is the first thing a new user meets.

HTML for browsers, JSON for ``accept: application/json``. Names are escaped for the format
and percent-encoded in links. Hidden names (a leading dot), names that are not UTF-8 (no
request could name them), entries other than files and directories, and symlinks that
resolve outside ROOT are never listed; a hidden directory is not listed at all.
"""

from __future__ import annotations

import json
import os
import stat
from typing import NamedTuple
from urllib.parse import quote

from h2stream.core.exchange import Exchange
from h2stream.handlers.files import FileRoot

# A listing is built on the worker's one thread: past this many entries the rest is left out
# (and the answer says so) rather than stall every other connection on one huge directory.
MAX_ENTRIES = 10_000

HTML_TYPE = b"text/html; charset=utf-8"
JSON_TYPE = b"application/json"
# The answer depends on accept, and a directory changes without a validator we could give.
_HEADERS = [(b"vary", b"accept"), (b"cache-control", b"no-cache")]

HINT = (
    b"not found: this directory has no index.html, and directory listing is off\n"
    b"turn it on with: h2stream serve --directory-listing ROOT"
    b" (or directory_listing = true in the config file)\n"
)
FORBIDDEN_HINT = HINT.replace(b"not found:", b"forbidden:")


class Entry(NamedTuple):
    name: str
    directory: bool
    size: int
    mtime: float


class DirectoryListing:
    """Lists directories of ``root``; called by the static handler with the directory found."""

    def __init__(self, root: FileRoot) -> None:
        self.root = root

    def __call__(self, exchange: Exchange, real: str, parts: list[str]) -> None:
        head = exchange.method == b"HEAD"
        try:
            entries, truncated = self.entries(real)
        except PermissionError:
            exchange.respond_bytes(403, b"forbidden\n", head=head)
            return
        except OSError:
            exchange.respond_bytes(404, b"not found\n", head=head)
            return
        path = "/" + "".join(part + "/" for part in parts)
        if wants_json(exchange):
            body = render_json(path, entries, truncated)
            content_type = JSON_TYPE
        else:
            body = render_html(path, entries, truncated)
            content_type = HTML_TYPE
        exchange.respond_bytes(200, body, content_type, extra=list(_HEADERS), head=head)

    def entries(self, real: str) -> tuple[list[Entry], bool]:
        """The listable entries of ``real``, directories first, then by name."""
        found: list[Entry] = []
        truncated = False
        with os.scandir(real) as scan:
            for item in scan:
                entry = self._entry(item)
                if entry is None:
                    continue
                if len(found) >= MAX_ENTRIES:
                    truncated = True
                    break
                found.append(entry)
        found.sort(key=lambda e: (not e.directory, e.name))
        return found, truncated

    def _entry(self, item: os.DirEntry[str]) -> Entry | None:
        name = item.name
        if name.startswith("."):
            return None
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            return None
        try:
            if item.is_symlink() and not self.root.inside(item.path):
                return None
            st = item.stat()  # follows a symlink: what a request for the name would get
        except OSError:
            return None  # vanished, or a dangling symlink
        if stat.S_ISDIR(st.st_mode):
            return Entry(name, True, 0, st.st_mtime)
        if stat.S_ISREG(st.st_mode):
            return Entry(name, False, st.st_size, st.st_mtime)
        return None  # FIFOs, sockets, devices are never served, so not listed


def wants_json(exchange: Exchange) -> bool:
    for name, value in exchange.headers:
        if name == b"accept":
            return b"application/json" in value.lower()
    return False


def render_json(path: str, entries: list[Entry], truncated: bool) -> bytes:
    listed = [
        {
            "name": e.name + ("/" if e.directory else ""),
            "type": "directory" if e.directory else "file",
            "size": e.size,
            "mtime": int(e.mtime),
        }
        for e in entries
    ]
    document = {"path": path, "entries": listed, "truncated": truncated}
    return (json.dumps(document, ensure_ascii=False) + "\n").encode("utf-8")


def render_html(path: str, entries: list[Entry], truncated: bool) -> bytes:
    import html  # at the first listing: its entity table is a worker at rest's 0.3 MiB

    title = html.escape(f"Index of {path}")
    base = quote(path)
    rows = []
    if path != "/":
        rows.append('<tr><td><a href="../">../</a></td><td></td></tr>')
    for e in entries:
        shown = e.name + ("/" if e.directory else "")
        href = html.escape(base + quote(e.name) + ("/" if e.directory else ""))
        size = "" if e.directory else f"{e.size:,}"
        rows.append(f'<tr><td><a href="{href}">{html.escape(shown)}</a></td><td>{size}</td></tr>')
    note = f"<p>Only the first {MAX_ENTRIES:,} entries are shown.</p>" if truncated else ""
    page = (
        '<!doctype html>\n<html><head><meta charset="utf-8">'
        f"<title>{title}</title></head>\n<body><h1>{title}</h1>\n"
        "<table>\n" + "\n".join(rows) + f"\n</table>{note}\n</body></html>\n"
    )
    return page.encode("utf-8")
