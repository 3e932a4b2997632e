"""A FastAPI app: JSON routes, a StreamingResponse, an UploadFile hashed as it is read."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

from fastapi import FastAPI, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

app = FastAPI()


class Item(BaseModel):
    name: str
    count: int


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None) -> dict[str, object]:
    return {"item_id": item_id, "q": q}


@app.post("/items")
async def create_item(item: Item) -> dict[str, object]:
    return {"name": item.name, "double": item.count * 2}


@app.get("/stream")
async def stream(n: int = 100) -> StreamingResponse:
    async def lines() -> AsyncIterator[bytes]:
        for i in range(n):
            yield b'{"i": %d}\n' % i

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@app.post("/upload")
async def upload(file: UploadFile) -> dict[str, object]:
    digest = hashlib.sha256()
    size = 0
    while chunk := await file.read(1 << 20):
        digest.update(chunk)
        size += len(chunk)
    return {"filename": file.filename, "size": size, "sha256": digest.hexdigest()}
