"""Plain ASGI 3 callables for what frameworks do not exercise: trailers, zerocopysend,
the wrong kinds of object behind --app."""

from __future__ import annotations

import os
from typing import Any

FILE = os.environ.get("ASGI_FILE", "")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return  # no lifespan: --lifespan auto carries on without it
    path = scope["path"]
    if path == "/trailers":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
                "trailers": True,
            }
        )
        await send({"type": "http.response.body", "body": b"body,", "more_body": True})
        await send({"type": "http.response.body", "body": b"more"})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]})
    elif path == "/range":
        # Bytes 100..(100+count) of ASGI_FILE, zero-copy.
        count = int(scope["query_string"] or b"1000")
        with open(FILE, "rb") as f:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"%d" % count)],
                }
            )
            await send(
                {"type": "http.response.zerocopysend", "file": f, "offset": 100, "count": count}
            )
    elif path == "/no-end":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"started", "more_body": True})
    else:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"not found"})


def not_async(environ: Any, start_response: Any) -> None:
    """A WSGI-shaped function: neither an h2stream.App nor an ASGI 3 app."""
