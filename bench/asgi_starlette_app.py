"""The Starlette app the ASGI bench serves with every ASGI server: ``GET /NAME`` is a
FileResponse of ``BENCH_ROOT/NAME`` (pathsend where the server announces it, else Starlette's
own chunked reads), ``/ndjson?rows=N`` a StreamingResponse of NDJSON rows.

The harness copies this file into a server's temp dir and runs it as
``bench_asgi_starlette_app:app``, so the server imports nothing from this repository.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

ROOT = Path(os.environ.get("BENCH_ROOT", ".")).resolve()
ROW = b'{"id": %d, "name": "row", "value": 3.14159, "tags": ["a", "b", "c"]}\n'


async def ndjson(request: Request) -> StreamingResponse:
    rows = int(request.query_params.get("rows", "1000"))

    async def lines() -> AsyncIterator[bytes]:
        for i in range(rows):
            yield ROW % i

    return StreamingResponse(lines(), media_type="application/x-ndjson")


async def file(request: Request) -> Response:
    name = request.path_params["name"]
    target = ROOT / name
    if "/" in name or name.startswith(".") or not target.is_file():
        return PlainTextResponse("not found", status_code=404)
    return FileResponse(target)


app = Starlette(routes=[Route("/ndjson", ndjson), Route("/{name}", file)])
