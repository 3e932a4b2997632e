"""A Quart app (not Starlette-shaped: its own request/response model and lifespan hooks)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

from quart import Quart, request

app = Quart(__name__)
started: list[str] = []


@app.before_serving
async def startup() -> None:
    started.append("up")


@app.get("/hello")
async def hello() -> dict[str, object]:
    return {"hello": "quart", "started": started}


@app.route("/upload", methods=["POST", "PUT"])
async def upload() -> dict[str, object]:
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.body:
        digest.update(chunk)
        size += len(chunk)
    return {"size": size, "sha256": digest.hexdigest()}


@app.get("/stream")
async def stream() -> tuple[AsyncIterator[bytes], int, dict[str, str]]:
    async def lines() -> AsyncIterator[bytes]:
        for i in range(1000):
            yield b"%d\n" % i

    return lines(), 200, {"content-type": "text/plain"}
