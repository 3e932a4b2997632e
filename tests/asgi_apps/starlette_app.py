"""A Starlette app: FileResponse (pathsend), StreamingResponse, uploads, lifespan, errors.

Environment: ``ASGI_ROOT`` (the directory FileResponse serves), ``ASGI_EVENTS`` (a file the
app appends lifecycle events to, for the tests to read), ``ASGI_FAIL_STARTUP`` (startup fails).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

ROOT = Path(os.environ.get("ASGI_ROOT", "."))
EVENTS = os.environ.get("ASGI_EVENTS")


def event(text: str) -> None:
    if EVENTS:
        with open(EVENTS, "a") as f:
            f.write(text + "\n")


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, str]]:
    if os.environ.get("ASGI_FAIL_STARTUP"):
        raise RuntimeError("database unreachable")
    event("startup")
    yield {"greeting": "hello from lifespan"}
    event("shutdown")


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse(request.state.greeting)


async def scope_view(request: Request) -> JSONResponse:
    scope = request.scope
    return JSONResponse(
        {
            "http_version": scope["http_version"],
            "scheme": scope["scheme"],
            "path": scope["path"],
            "raw_path": scope["raw_path"].decode("latin-1"),
            "query_string": scope["query_string"].decode("latin-1"),
            "root_path": scope["root_path"],
            "host": request.headers.get("host"),
            "client": list(scope["client"] or ()),
            "extensions": sorted(scope.get("extensions", {})),
        }
    )


async def file(request: Request) -> FileResponse:
    return FileResponse(ROOT / request.path_params["name"])


async def numbers(request: Request) -> StreamingResponse:
    count = int(request.query_params.get("n", "1000"))
    size = int(request.query_params.get("size", "64"))

    async def lines() -> AsyncIterator[bytes]:
        try:
            for i in range(count):
                yield b"%d:" % i + b"x" * size + b"\n"
        finally:
            event("numbers finally")

    return StreamingResponse(lines(), media_type="application/x-ndjson")


# One chunk for every stream, so that what a stalled stream costs is the server's alone (an
# app that made its own 64 KiB per request would hold that much per stalled client itself).
FOREVER_CHUNK = b"y" * 65536


async def forever(request: Request) -> StreamingResponse:
    """Never ends on its own: only a client that goes away stops it."""

    async def chunks() -> AsyncIterator[bytes]:
        try:
            while True:
                yield FOREVER_CHUNK
        finally:
            event("forever finally")

    return StreamingResponse(chunks())


async def upload(request: Request) -> JSONResponse:
    digest = hashlib.sha256()
    size = 0
    delay = float(request.query_params.get("delay", "0"))
    async for chunk in request.stream():
        digest.update(chunk)
        size += len(chunk)
        if delay:
            await asyncio.sleep(delay)
    return JSONResponse({"size": size, "sha256": digest.hexdigest()})


async def fail(request: Request) -> PlainTextResponse:
    raise RuntimeError("handler bug")


async def fail_after(request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"partial"
        raise RuntimeError("broken mid-body")

    return StreamingResponse(chunks())


app = Starlette(
    routes=[
        Route("/hello", hello),
        Route("/scope/{rest:path}", scope_view),
        Route("/file/{name}", file, methods=["GET", "HEAD"]),
        Route("/numbers", numbers),
        Route("/forever", forever),
        Route("/upload", upload, methods=["POST", "PUT"]),
        Route("/fail", fail),
        Route("/fail-after", fail_after),
    ],
    lifespan=lifespan,
)
