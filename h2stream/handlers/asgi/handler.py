"""The exchange handler that runs an ASGI 3 app: scope from a template, one Task per request."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from h2stream.config import Config
from h2stream.core.exchange import Exchange, Handler
from h2stream.core.stats import STATS
from h2stream.handlers.asgi.channel import Channel
from h2stream.handlers.asgi.lifespan import Lifespan
from h2stream.handlers.asgi.types import ASGI_INFO, AsgiApp

# What we announce in scope["extensions"]: Starlette's FileResponse uses pathsend when listed.
EXTENSIONS: dict[str, dict[str, Any]] = {
    "http.response.pathsend": {},
    "http.response.zerocopysend": {},
    "http.response.trailers": {},
}


class AsgiHandler:
    """Serves every request with an ASGI app; ``/_h2stream/`` paths go to ``builtins`` first.

    ``lifespan`` is what the server runs before it listens and during its drain.
    """

    def __init__(
        self,
        app: AsgiApp,
        config: Config,
        builtins: Handler | None = None,
        builtins_prefix: bytes = b"/_h2stream/",
    ) -> None:
        self.app = app
        self.lifespan = Lifespan(app, config.lifespan, config.graceful_timeout or 30.0)
        self._builtins = builtins
        self._prefix = builtins_prefix
        self._limit = config.max_request_body
        self._root_path = config.root_path
        self._raw_root = config.root_path.encode("utf-8")
        # The fields every request shares: copied, then the request's own are set.
        self._template: dict[str, Any] = {
            "type": "http",
            "asgi": dict(ASGI_INFO),
            "root_path": config.root_path,
            "extensions": EXTENSIONS,
        }
        self._tasks: set[asyncio.Task[None]] = set()
        self._discard: Callable[[asyncio.Task[None]], None] = self._tasks.discard

    @property
    def tasks(self) -> frozenset[asyncio.Task[None]]:
        """App tasks still running (empty once every request has finished)."""
        return frozenset(self._tasks)

    def __call__(self, exchange: Exchange) -> None:
        raw = exchange.path
        if self._builtins is not None and raw.startswith(self._prefix):
            self._builtins(exchange)
            return
        limit = self._limit
        for name, value in exchange.headers:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                # Before reading a byte, and before any Task exists.
                STATS.request_body_too_large += 1
                exchange.answer_and_stop(413, b"payload too large\n")
                return
        channel = Channel(exchange, limit)
        task = asyncio.get_running_loop().create_task(channel.run(self.app, self.scope(exchange)))
        exchange.task = channel
        # A reference until done: the loop keeps only weak ones.
        self._tasks.add(task)
        task.add_done_callback(self._discard)

    def scope(self, exchange: Exchange) -> dict[str, Any]:
        """The HTTP scope of one request (ASGI HTTP spec 2.4)."""
        scope = self._template.copy()
        raw = exchange.path
        query = raw.find(b"?")
        raw_path = raw if query < 0 else raw[:query]
        path = unquote(raw_path.decode("latin-1"), encoding="utf-8", errors="replace")
        if self._raw_root:
            # As uvicorn does: path and raw_path include the prefix the app is mounted at.
            path = self._root_path + path
            raw_path = self._raw_root + raw_path
        headers = []
        host = None
        for name, value in exchange.headers:
            if name[:1] == b":":
                if name == b":authority":
                    host = value
            elif name == b"host":
                if host is None:
                    host = value
            else:
                headers.append((name, value))
        if host is not None:
            # HTTP/2's :authority becomes the host header, first (the spec's rule).
            headers.insert(0, (b"host", host))
        scope["http_version"] = exchange.http_version
        scope["method"] = exchange.method.decode("latin-1")
        scope["scheme"] = "https" if exchange.tls else "http"
        scope["path"] = path
        scope["raw_path"] = raw_path
        scope["query_string"] = b"" if query < 0 else raw[query + 1 :]
        scope["headers"] = headers
        scope["client"], scope["server"] = exchange.addresses
        if self.lifespan.running or self.lifespan.state:
            scope["state"] = self.lifespan.state.copy()
        return scope
