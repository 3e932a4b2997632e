"""The application API: routes, requests with a flow-controlled body reader, and responses.

A handler is ``async def handler(request) -> Response | None``. It either returns a
:class:`Response` (bytes, a file served by the zero-copy path, or an async iterator of chunks),
or writes directly: ``stream = request.start_response(200, headers)`` then
``await stream.send(chunk)``, which returns only when flow control has let the chunk go. That
await is the producer pause; nothing is buffered behind it.

Request bodies arrive through :meth:`Request.read` (or ``async for chunk in request``); window
credit goes back to the client only as the handler reads, so at most one stream window of an
upload is ever held. A body over the limit gets 413 (before any of it is read when
``content-length`` says so; else the moment it crosses the limit, and the stream is reset).

Responses of compressible types are compressed when the client accepts it (see
:mod:`h2stream.body.encoding`), chunk by chunk as the window opens.

Errors: a handler that raises before the response headers gives 500, after them a reset
(HTTP/2: RST_STREAM(INTERNAL_ERROR)); both log a line with the request id. A client that resets
the stream (or drops the connection) cancels the handler: it sees ``CancelledError`` at its next
await.

Everything here speaks only the exchange interface (:mod:`h2stream.core.exchange`), so the same
App serves any protocol that implements it.

Files of a directory need no handler and no Task: :class:`App` falls through to a
:class:`~h2stream.handlers.static.StaticFiles` handler for paths no route matches.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import parse_qsl, unquote

from h2stream.body.bodies import ChunkBody, FdCloser, FileBody
from h2stream.body.encoding import (
    VARY,
    CompressedBody,
    CompressedChunkBody,
    EncodingPolicy,
    encoded_headers,
)
from h2stream.body.sources import FileSource, MemorySource
from h2stream.config import Config
from h2stream.core import requestid
from h2stream.core.exchange import Exchange, Handler, Headers, ResetCode
from h2stream.core.framing import Body, BytesBody
from h2stream.core.stats import STATS
from h2stream.handlers.bodyqueue import BodyQueue

log = logging.getLogger("h2stream.app")

HeaderList = Iterable[tuple[str | bytes, str | bytes]]

# Without a Config (an App not bound by the CLI): the CLI's default --max-request-body.
DEFAULT_BODY_LIMIT = 1 << 30


class PayloadTooLarge(Exception):
    """The request body exceeded the configured limit."""


class NotAcceptable(Exception):
    """The client refused identity and every coding we could use (answered 406)."""


class StreamClosed(Exception):
    """The client reset the stream or the connection went away."""


@dataclass(slots=True)
class FileResponse:
    """Part or all of a file, sent as static files are (zero-copy on h2c for large frames).
    ``path`` or an open ``fd`` (then owned)."""

    path: str | None = None
    fd: int | None = None
    offset: int = 0
    length: int | None = None
    content_type: str = "application/octet-stream"


@dataclass(slots=True)
class Response:
    """A whole response. ``compress``: None decides by content type, False never, True always
    (when the client accepts a coding)."""

    status: int = 200
    headers: HeaderList = ()
    body: bytes | str | FileResponse | AsyncIterable[bytes] | None = b""
    trailers: HeaderList | None = None
    content_type: str | None = None
    compress: bool | None = None


def _to_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


def encode_headers(headers: HeaderList) -> Headers:
    """Lowercase names, bytes everywhere: what the exchange sends as is."""
    return [(_to_bytes(name).lower(), _to_bytes(value)) for name, value in headers]


class RequestBody:
    """Request body chunks as they arrive; window credit goes back only as they are read
    (bodyqueue.py)."""

    def __init__(self, exchange: Exchange, limit: int, on_too_large: Callable[[], None]) -> None:
        self._exchange = exchange
        self._queue = BodyQueue(exchange, limit)
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False
        self._error: BaseException | None = None
        self._limit = limit
        self._on_too_large = on_too_large

    @property
    def received(self) -> int:
        return self._queue.received

    @property
    def buffered(self) -> int:
        """Bytes received but not yet read by the handler (what the server holds)."""
        return self._queue.buffered

    # RequestBodySink, called by the protocol
    def feed(self, data: bytes, flow_controlled_length: int) -> None:
        if self._ended:
            self._exchange.consumed(flow_controlled_length)
            return
        if not self._queue.push(data, flow_controlled_length):
            self._fail(PayloadTooLarge(f"request body over {self._limit} bytes"))
            self._on_too_large()
            return
        self._wake()

    def end(self, error: BaseException | None = None) -> None:
        self._ended = True
        if error is not None:
            self._fail(error)
        self._wake()

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._queue.discard()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read(self) -> bytes:
        """The next chunk, or b"" at the end of the body."""
        while True:
            data = self._queue.take()
            if data is not None:
                return data
            if self._error is not None:
                raise self._error
            if self._ended:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter


class Request:
    """What a handler sees of one request."""

    def __init__(self, app: App, exchange: Exchange, body_limit: int) -> None:
        self._app = app
        self._exchange = exchange
        self.stream_id = exchange.stream_id
        self.method = exchange.method.decode("latin-1")
        raw_path = exchange.path.decode("latin-1")
        path, _, self.query = raw_path.partition("?")
        self.raw_path = raw_path
        self.path = unquote(path)
        self.headers: list[tuple[str, str]] = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in exchange.headers
            if not name.startswith(b":")
        ]
        self.authority = next(
            (v.decode("latin-1") for n, v in exchange.headers if n == b":authority"), ""
        )
        self._accept_encoding = next(
            (v for n, v in exchange.headers if n == b"accept-encoding"), None
        )
        self._body = RequestBody(exchange, body_limit, self._too_large)
        self._response: ResponseStream | None = None
        # True once a one-shot response (bytes or a file) has been handed to the exchange.
        self._answered = False
        # A request that has already ended gets its end() from read_body at once.
        exchange.read_body(self._body)

    @property
    def request_id(self) -> str:
        """The client's x-request-id (or traceparent id), or ours when the access log is on."""
        return self._exchange.request_id

    @property
    def args(self) -> dict[str, str]:
        """Query parameters (the last value of a repeated name wins)."""
        return dict(parse_qsl(self.query))

    @property
    def body_buffered(self) -> int:
        """Request body bytes received but not yet read: at most about one stream window."""
        return self._body.buffered

    def header(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return default

    async def read(self) -> bytes:
        """The next chunk of the request body (b"" at its end). Credit returns as you read."""
        return await self._body.read()

    async def body(self) -> bytes:
        """The whole request body, held in memory (bounded by the body limit)."""
        parts = []
        while chunk := await self._body.read():
            parts.append(chunk)
        return b"".join(parts)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while chunk := await self._body.read():
            yield chunk

    @property
    def started(self) -> bool:
        return self._answered or self._response is not None

    def start_response(
        self,
        status: int = 200,
        headers: HeaderList = (),
        *,
        content_type: str | None = None,
        compress: bool | None = None,
    ) -> ResponseStream:
        """Send the response headers now; the body follows through the returned stream.

        The body is compressed when ``compress`` allows it, the content type is compressible
        and the client accepts a coding; ``send`` then still returns once the chunk's
        compressed bytes have been framed. Raises :class:`NotAcceptable` (answered 406) when
        the client refuses identity and every coding.
        """
        if self.started:
            raise RuntimeError("response already started")
        fields = encode_headers(headers)
        if content_type is not None:
            fields.append((b"content-type", content_type.encode()))
        coding = self._coding(status, fields, compress, _declared_length(fields))
        if coding is not None:
            fields = encoded_headers(fields, coding, self._suffix(coding))
        body: ChunkBody | CompressedChunkBody | None = None
        if self.method == "HEAD":
            pass  # headers only: what is sent afterwards is discarded
        elif coding is None:
            body = ChunkBody()
        else:
            body = CompressedChunkBody(self._policy().encoder(coding))
        exchange = self._exchange
        self._response = ResponseStream(exchange, body)
        exchange.respond(status, fields, body)
        exchange.wake()
        return self._response

    # -- negotiation ---------------------------------------------------------------------

    def _policy(self) -> EncodingPolicy:
        policy = self._app.policy
        assert policy is not None
        return policy

    def _suffix(self, coding: str) -> str:
        return self._policy().etag_suffix[coding]

    def _coding(
        self,
        status: int,
        fields: Headers,
        compress: bool | None,
        size: int | None,
    ) -> str | None:
        """The coding to send ``fields``' body with (None: identity). Appends ``vary``."""
        policy = self._app.policy
        if policy is None or compress is False or status != 200 or self.method == "CONNECT":
            return None
        content_type = None
        for name, value in fields:
            if name == b"content-encoding":
                return None  # the application encoded it itself
            if name == b"content-type":
                content_type = value
        if compress is None and (content_type is None or not policy.compressible(content_type)):
            return None
        coding = policy.select(self._accept_encoding, size)
        if coding == "":
            raise NotAcceptable(self._accept_encoding)
        if coding == "identity":
            fields.append(VARY)
            return None
        return coding

    def _too_large(self) -> None:
        """The body crossed the limit while arriving: answer now, stop the upload."""
        STATS.request_body_too_large += 1
        exchange = self._exchange
        if not exchange.open:
            return
        if self.started:
            exchange.reset(ResetCode.CANCEL)
            return
        self._answered = True
        exchange.answer_and_stop(413, b"payload too large\n")
        exchange.wake()
        # The handler has nothing left to do: it sees the cancellation at its next await.
        task = exchange.task
        if task is not None and not task.done():
            task.cancel()


class _PushBody(Protocol):
    def put(
        self,
        data: bytes | bytearray | memoryview,
        waiter: asyncio.Future[None],
        end: bool,
        trailers: Headers | None = None,
    ) -> None: ...


class ResponseStream:
    """The body side of a started response. Each send returns once its bytes are framed."""

    def __init__(self, exchange: Exchange, body: ChunkBody | CompressedChunkBody | None) -> None:
        self._exchange = exchange
        # None for a response without a body (HEAD): sends are accepted and discarded.
        self._body = body
        self.ended = False

    async def send(self, chunk: bytes | bytearray | memoryview | str, *, end: bool = False) -> None:
        """Hand over one chunk; returns once flow control has let all of it go."""
        if self.ended:
            raise RuntimeError("response already ended")
        if isinstance(chunk, str):
            chunk = chunk.encode()
        await self._put(chunk, end, None)

    async def end(self, trailers: HeaderList | None = None) -> None:
        """End the body, with trailers if given."""
        if not self.ended:
            await self._put(b"", True, encode_headers(trailers) if trailers else None)

    async def _put(
        self,
        chunk: bytes | bytearray | memoryview,
        end: bool,
        trailers: Headers | None,
    ) -> None:
        body: _PushBody | None = self._body
        if body is None:
            self.ended = end
            return
        exchange = self._exchange
        # Not open: reset, or the connection lost; the body was dropped with the exchange.
        if not exchange.open:
            raise StreamClosed(f"stream {exchange.stream_id} is closed")
        if not chunk and not end:
            return
        self.ended = end
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        body.put(chunk, waiter, end, trailers)
        exchange.body_ready()
        try:
            await waiter
        except ConnectionResetError as exc:
            raise StreamClosed(str(exc)) from None


RouteHandler = Callable[[Request], Awaitable[Response | None]]


@dataclass(slots=True)
class _Route:
    path: str
    methods: frozenset[str]
    handler: RouteHandler
    prefix: bool
    max_body: int | None


@dataclass
class App:
    """Routes plus handlers. Unmatched paths fall through to ``fallback`` (a directory).

    ``body_limit`` caps request bodies (default: the server's ``--max-request-body``);
    ``policy`` decides compression (set by :meth:`bind` from the server's options).
    """

    fallback: Handler | None = None
    body_limit: int | None = None
    policy: EncodingPolicy | None = None
    _routes: dict[str, _Route] = field(default_factory=dict)
    _prefixes: list[_Route] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def route(
        self,
        path: str,
        methods: Iterable[str] = ("GET", "HEAD"),
        *,
        max_body: int | None = None,
    ) -> Callable[[RouteHandler], RouteHandler]:
        """Register a handler for an exact path, or for a prefix when ``path`` ends in ``*``.

        ``max_body`` overrides the body limit for this route.
        """

        def register(handler: RouteHandler) -> RouteHandler:
            prefix = path.endswith("*")
            methods_set = frozenset(m.upper() for m in methods)
            route = _Route(path.rstrip("*"), methods_set, handler, prefix, max_body)
            if prefix:
                self._prefixes.append(route)
                self._prefixes.sort(key=lambda r: -len(r.path))
            else:
                self._routes[path] = route
            return handler

        return register

    def bind(
        self,
        config: Config,
        fallback: Handler | None = None,
        policy: EncodingPolicy | None = None,
    ) -> App:
        """Take the server's options (body limit, compression) and the fallback handler.

        ``policy`` shares the server's compression policy (and its codec pool); without it
        one is made from ``config``.
        """
        if self.body_limit is None:
            self.body_limit = config.max_request_body
        if self.policy is None:
            self.policy = policy if policy is not None else EncodingPolicy.from_config(config)
        if fallback is not None and self.fallback is None:
            self.fallback = fallback
        return self

    @property
    def tasks(self) -> frozenset[asyncio.Task[None]]:
        """Handler tasks still running (empty once every request has finished)."""
        return frozenset(self._tasks)

    def match(self, path: str) -> _Route | None:
        route = self._routes.get(path)
        if route is not None:
            return route
        for candidate in self._prefixes:
            if path.startswith(candidate.path):
                return candidate
        return None

    # The exchange handler: synchronous dispatch, a Task only for application routes.
    def __call__(self, exchange: Exchange) -> None:
        raw = exchange.path
        query = raw.find(b"?")
        path = unquote((raw if query < 0 else raw[:query]).decode("latin-1"))
        route = self.match(path)
        if route is None:
            if self.fallback is not None:
                self.fallback(exchange)
            else:
                exchange.respond_bytes(404, b"not found\n", head=exchange.method == b"HEAD")
            return
        if exchange.method.decode("latin-1") not in route.methods:
            allow = ", ".join(sorted(route.methods)).encode()
            # A body sent along is drained (its credit goes straight back), not reset: some
            # clients (httpx) drop a complete response that RST_STREAM(NO_ERROR) follows.
            exchange.respond_bytes(405, b"method not allowed\n", extra=[(b"allow", allow)])
            return
        limit = route.max_body
        if limit is None:
            limit = self.body_limit if self.body_limit is not None else DEFAULT_BODY_LIMIT
        declared = _declared_length(exchange.headers)
        if declared is not None and declared > limit:
            # Before reading a byte, and before any Task exists.
            STATS.request_body_too_large += 1
            exchange.answer_and_stop(413, b"payload too large\n")
            return
        request = Request(self, exchange, limit)
        task = asyncio.get_running_loop().create_task(self._run(route.handler, request))
        exchange.task = task
        # A reference until done: the loop keeps only weak ones.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, handler: RouteHandler, request: Request) -> None:
        exchange = request._exchange
        try:
            result = await handler(request)
            if result is not None:
                await send_response(request, result)
            elif not request.started:
                raise RuntimeError("handler returned no response and started none")
            elif request._response is not None and not request._response.ended:
                await request._response.end()
        except (asyncio.CancelledError, StreamClosed):
            pass  # the client went away (or the body limit answered): nothing to answer
        except PayloadTooLarge:
            _fail(request, 413, ResetCode.CANCEL)
        except NotAcceptable:
            _fail(request, 406, ResetCode.INTERNAL_ERROR)
        except Exception:
            if not exchange.request_id:
                # The id the 500 carries (respond adds x-request-id) and the log line names.
                exchange.request_id = requestid.generate()
            log.exception(
                "handler failed: request_id=%s stream=%d %s %s",
                exchange.request_id,
                exchange.stream_id,
                request.method,
                request.raw_path,
            )
            _fail(request, 500, ResetCode.INTERNAL_ERROR)
        finally:
            exchange.wake()


_MESSAGES = {
    406: b"not acceptable\n",
    413: b"payload too large\n",
    500: b"internal server error\n",
}


def _fail(request: Request, status: int, code: ResetCode) -> None:
    """Before the headers: an error status. After: a reset (the body is broken)."""
    exchange = request._exchange
    if not exchange.open:
        return
    if not request.started:
        extra = [VARY] if status == 406 else None
        exchange.answer_and_stop(status, _MESSAGES.get(status, b"error\n"), extra)
    else:
        exchange.reset(code)


def _declared_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def send_response(request: Request, response: Response) -> None:
    """Send a returned :class:`Response` with the body path that fits it."""
    exchange = request._exchange
    fields = encode_headers(response.headers)
    if response.content_type is not None:
        fields.append((b"content-type", response.content_type.encode()))
    body = response.body
    head = request.method == "HEAD"
    trailers = encode_headers(response.trailers) if response.trailers else None
    if isinstance(body, str):
        body = body.encode()
    if body is None or isinstance(body, bytes | bytearray | memoryview):
        data = bytes(body or b"")
        coding = request._coding(response.status, fields, response.compress, len(data))
        if coding is None:
            fields.append((b"content-length", b"%d" % len(data)))
        if trailers is None:
            one_shot: Body | None = None
            if coding is not None:
                fields = encoded_headers(fields, coding, request._suffix(coding))
                if not head:
                    encoder = request._policy().encoder(coding, len(data))
                    one_shot = CompressedBody(MemorySource(data), encoder)
            elif not head and data:
                one_shot = BytesBody(data)
            request._answered = True
            exchange.respond(response.status, fields, one_shot)
            exchange.wake()
            return
        out = request.start_response(response.status, fields, compress=coding is not None)
        if not head:
            await out.send(data)
        await out.end(response.trailers)
        return
    if isinstance(body, FileResponse):
        _send_file(request, response.status, fields, body, head, response.compress)
        return
    out = request.start_response(response.status, fields, compress=response.compress)
    try:
        if not head:
            async for chunk in body:
                await out.send(chunk)
        await out.end(response.trailers)
    finally:
        # An abandoned generator is closed now, so its own finally blocks run promptly.
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()


def _send_file(
    request: Request,
    status: int,
    fields: Headers,
    spec: FileResponse,
    head: bool,
    compress: bool | None,
) -> None:
    exchange = request._exchange
    fd = spec.fd if spec.fd is not None else os.open(spec.path or "", os.O_RDONLY | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("FileResponse needs a regular file")
        length = spec.length if spec.length is not None else max(0, info.st_size - spec.offset)
        length = min(length, max(0, info.st_size - spec.offset))
        if not any(name == b"content-type" for name, _ in fields):
            fields.append((b"content-type", spec.content_type.encode()))
        coding = request._coding(status, fields, compress, length)
    except BaseException:
        os.close(fd)
        raise
    request._answered = True
    closer = FdCloser(fd)
    if coding is not None:
        fields = encoded_headers(fields, coding, request._suffix(coding))
        body: Body | None = None
        if head:
            closer.close()
        else:
            encoder = request._policy().encoder(coding, length)
            body = CompressedBody(FileSource(fd, spec.offset, length, closer), encoder)
        exchange.respond(status, fields, body)
    else:
        fields.append((b"content-length", b"%d" % length))
        if head or length == 0:
            closer.close()
            exchange.respond(status, fields, None)
        else:
            exchange.respond(status, fields, FileBody(fd, spec.offset, length, closer))
    exchange.wake()
