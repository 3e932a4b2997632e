"""The exchange handler that runs an ASGI 3 app: scope from a template, one Task per request."""

from __future__ import annotations

import asyncio
import sys
from typing import Any
from urllib.parse import unquote

from h2stream.config import Config
from h2stream.core.exchange import Exchange, Handler, Headers
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


# Method names as str without a decode per request.
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}


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
        # The scope of every request, copied, then the request's own fields set: with every
        # key in it already, the copy is presized and the sets replace values.
        self._template: dict[str, Any] = {
            "type": "http",
            "asgi": dict(ASGI_INFO),
            "http_version": "",
            "method": "",
            "scheme": "",
            "path": "",
            "raw_path": b"",
            "query_string": b"",
            "root_path": config.root_path,
            "headers": [],
            "client": None,
            "server": None,
            "extensions": EXTENSIONS,
        }
        self._tasks: set[asyncio.Task[None]] = set()
        # The last request field list seen and what asgi_headers made of it (copies: a
        # handler or an app may change the lists it is given). Clients repeat their fields
        # request after request, and comparing lists costs less than converting one.
        self._fields_seen: Headers | None = None
        self._converted: tuple[Headers, bytes | None] = ([], None)

    @property
    def tasks(self) -> frozenset[asyncio.Task[None]]:
        """App tasks still running (empty once every request has finished)."""
        return frozenset(self._tasks)

    def __call__(self, exchange: Exchange) -> None:
        raw = exchange.path
        if self._builtins is not None and raw.startswith(self._prefix):
            self._builtins(exchange)
            return
        fields = exchange.headers
        if fields == self._fields_seen:
            headers, length = self._converted
            headers = headers.copy()
        else:
            headers, length = asgi_headers(fields)
            self._fields_seen = fields.copy()
            self._converted = (headers.copy(), length)
        if length is not None and length.isdigit() and int(length) > self._limit:
            # Before reading a byte, and before any Task exists.
            STATS.request_body_too_large += 1
            exchange.answer_and_stop(413, b"payload too large\n")
            return
        channel = Channel(exchange, self._limit)
        # Before the app runs: a reset that comes while it runs must find it.
        exchange.task = channel
        coro = channel.run(self.app, self.scope(exchange, raw, headers), self._tasks)
        loop = asyncio.get_running_loop()
        if sys.version_info >= (3, 12):
            # The app's first step runs now, as a task (current_task() is the app's own, which
            # anyio's cancel scopes need): a response that needs no real wait is framed in
            # this read, its objects freed before the next request's are made.
            task = asyncio.Task(coro, loop=loop, eager_start=True)
            if task.done():
                return
        else:
            task = loop.create_task(coro)
        # A reference until it ends (Channel.run drops it): the loop keeps only weak ones.
        channel.adopt(task, self._tasks)

    def scope(self, exchange: Exchange, raw: bytes, headers: Headers) -> dict[str, Any]:
        """The HTTP scope of one request (ASGI HTTP spec 2.4): ``raw`` is its target,
        ``headers`` its fields as :func:`asgi_headers` gave them."""
        scope = self._template.copy()
        query = raw.find(b"?")
        raw_path = raw if query < 0 else raw[:query]
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path, encoding="utf-8", errors="replace")
        if self._raw_root:
            # As uvicorn does: path and raw_path include the prefix the app is mounted at.
            path = self._root_path + path
            raw_path = self._raw_root + raw_path
        method = exchange.method
        scope["http_version"] = exchange.http_version
        scope["method"] = _METHODS.get(method) or method.decode("latin-1")
        scope["scheme"] = "https" if exchange.tls else "http"
        scope["path"] = path
        scope["raw_path"] = raw_path
        scope["query_string"] = b"" if query < 0 else raw[query + 1 :]
        scope["headers"] = headers
        scope["client"], scope["server"] = exchange.addresses
        lifespan = self.lifespan
        if lifespan.running or lifespan.state:
            scope["state"] = lifespan.state.copy()
        return scope


def asgi_headers(fields: Headers) -> tuple[Headers, bytes | None]:
    """The request's fields as ASGI's ``headers`` (pseudo-header fields dropped, HTTP/2's
    ``:authority`` as the ``host`` field, first), and the ``content-length`` value if any."""
    headers: Headers = []
    append = headers.append
    host = length = None
    for field in fields:
        name = field[0]
        if name[0] == 0x3A:  # ":" (names are never empty: h2 and llhttp refuse them)
            if name == b":authority":
                host = field[1]
        elif name == b"host":
            if host is None:
                host = field[1]
        else:
            if name == b"content-length":
                length = field[1]
            append(field)
    if host is not None:
        headers.insert(0, (b"host", host))
    return headers, length
