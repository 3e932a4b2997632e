"""A plain ASGI app for the Python peers, which have no file server of their own.

The harness copies this file into a server's temp dir and runs it as ``bench_asgi_app:app``, so
the peer imports nothing from this repository. Environment:

- ``BENCH_ROOT``: the directory of test files (flat: ``GET /NAME`` serves ``BENCH_ROOT/NAME``).
- ``BENCH_MODE``: ``static`` opens and reads the file on every request, 256 KiB at a time, the
  way a simple static handler does; ``memory`` answers from bytes loaded at start (files up to
  1 MiB), which measures the server and its HTTP/2 stack rather than file I/O.

Reads are blocking: from the page cache a 256 KiB read takes tens of microseconds, less than a
thread hand-off would cost, and no peer is given an advantage the others lack.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ROOT = Path(os.environ.get("BENCH_ROOT", ".")).resolve()
MODE = os.environ.get("BENCH_MODE", "static")
CHUNK = 256 * 1024
MEMORY_MAX = 1024 * 1024


def _preload() -> dict[str, bytes]:
    if MODE != "memory":
        return {}
    found = {}
    for entry in os.scandir(ROOT):
        if entry.is_file() and entry.stat().st_size <= MEMORY_MAX:
            found["/" + entry.name] = Path(entry.path).read_bytes()
    return found


BODIES = _preload()


def _headers(length: int) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", b"application/octet-stream"),
        (b"content-length", str(length).encode()),
    ]


async def _not_found(send: Send) -> None:
    await send({"type": "http.response.start", "status": 404, "headers": _headers(9)})
    await send({"type": "http.response.body", "body": b"not found"})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _resolve(path: str) -> Path | None:
    """The file for a flat request path, or None for anything outside ROOT or not a file."""
    name = path.lstrip("/")
    if not name or "/" in name or name.startswith("."):
        return None
    candidate = ROOT / name
    return candidate if candidate.is_file() else None


async def _static(path: str, send: Send) -> None:
    target = _resolve(path)
    if target is None:
        await _not_found(send)
        return
    with target.open("rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        await send({"type": "http.response.start", "status": 200, "headers": _headers(size)})
        left = size
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": left > 0})
        if size == 0:
            await send({"type": "http.response.body", "body": b""})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    if MODE == "memory":
        body = BODIES.get(scope["path"])
        if body is None:
            await _not_found(send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": _headers(len(body))})
        await send({"type": "http.response.body", "body": body})
        return
    await _static(scope["path"], send)
