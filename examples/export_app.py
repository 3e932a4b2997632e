"""An h2stream application: exports of a large generated table, as NDJSON and as CSV.

Run it from the repository root (the current directory is importable)::

    h2stream serve --app examples.export_app:app            # the app alone
    h2stream serve . --app examples.export_app:app          # plus the directory behind it

and fetch::

    curl --http2-prior-knowledge --compressed -o table.ndjson \\
        'http://127.0.0.1:8080/export.ndjson?rows=1000000'
    curl --http2-prior-knowledge --compressed -o table.csv 'http://127.0.0.1:8080/export.csv'
    curl --http2-prior-knowledge -T big.bin http://127.0.0.1:8080/upload

Each export is produced while it is sent: the generator runs only as fast as the client's
flow-control window lets its chunks go, so memory stays flat however large the table. Both
are compressed (zstd or gzip) when the client accepts it. The CSV export ends with trailers
carrying its row count and the SHA-256 of the (uncompressed) body.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator, Iterator

from h2stream.handlers.app import App, Request, Response

app = App()

# Rows per chunk handed to the server: about 50 KiB, so each send moves a useful amount.
BATCH = 500
MAX_ROWS = 100_000_000
CITIES = ("Berlin", "Dublin", "Lisbon", "London", "Madrid", "Monaco", "Nantes", "Sydney")


def table(rows: int) -> Iterator[dict[str, object]]:
    """A deterministic table: the same rows for the same ``rows`` every time."""
    for i in range(1, rows + 1):
        yield {
            "id": i,
            "name": f"user-{i}",
            "city": CITIES[(i * 7) % len(CITIES)],
            "score": round(100 + (i * 7919) % 90000 / 100, 2),
            "active": i % 3 != 0,
        }


def _rows(request: Request, default: int = 100_000) -> int:
    text = request.args.get("rows", str(default))
    if not text.isdigit() or int(text) > MAX_ROWS:
        raise ValueError(f"rows must be a whole number up to {MAX_ROWS}")
    return int(text)


@app.route("/export.ndjson")
async def export_ndjson(request: Request) -> Response:
    """Return an async iterator: the server pulls the next chunk once the last one has left."""
    try:
        rows = _rows(request)
    except ValueError as exc:
        return Response(400, body=f"{exc}\n", content_type="text/plain")

    async def lines() -> AsyncIterator[bytes]:
        batch: list[str] = []
        for row in table(rows):
            batch.append(json.dumps(row, separators=(",", ":")))
            if len(batch) == BATCH:
                yield ("\n".join(batch) + "\n").encode()
                batch.clear()
        if batch:
            yield ("\n".join(batch) + "\n").encode()

    return Response(body=lines(), content_type="application/x-ndjson")


@app.route("/export.csv")
async def export_csv(request: Request) -> None:
    """Write directly: each ``await out.send()`` returns when flow control let it go."""
    try:
        rows = _rows(request)
    except ValueError as exc:
        out = request.start_response(400, content_type="text/plain")
        await out.send(f"{exc}\n", end=True)
        return
    out = request.start_response(
        200,
        [("content-disposition", 'attachment; filename="export.csv"')],
        content_type="text/csv; charset=utf-8",
    )
    digest = hashlib.sha256()
    header = b"id,name,city,score,active\n"
    digest.update(header)
    await out.send(header)
    batch: list[str] = []
    for row in table(rows):
        # JSON's spelling of booleans, so both exports say the same (Python's would be True).
        active = "true" if row["active"] else "false"
        batch.append(f"{row['id']},{row['name']},{row['city']},{row['score']},{active}\n")
        if len(batch) == BATCH:
            chunk = "".join(batch).encode()
            digest.update(chunk)
            await out.send(chunk)
            batch.clear()
    chunk = "".join(batch).encode()
    digest.update(chunk)
    await out.send(chunk)
    await out.end(trailers=[("x-rows", str(rows)), ("x-sha256", digest.hexdigest())])


@app.route("/upload", methods=("POST", "PUT"))
async def upload(request: Request) -> Response:
    """Hash an upload as it arrives; window credit goes back only as each chunk is read."""
    started = time.monotonic()
    digest = hashlib.sha256()
    size = 0
    async for chunk in request:
        digest.update(chunk)
        size += len(chunk)
    answer = {"bytes": size, "sha256": digest.hexdigest(), "seconds": time.monotonic() - started}
    return Response(body=json.dumps(answer) + "\n", content_type="application/json")
