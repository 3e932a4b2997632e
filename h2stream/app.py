"""The application API: routes, requests with a flow-controlled body reader, and responses.

A handler is ``async def handler(request) -> Response | None``. It either returns a
:class:`Response` (bytes, a file served by the zero-copy path, or an async iterator of chunks),
or writes directly: ``stream = request.start_response(200, headers)`` then
``await stream.send(chunk)``, which returns only when flow control has let the chunk go. That
await is the producer pause; nothing is buffered behind it.

Files of a directory need no handler and no Task: :class:`App` falls through to a
:class:`~h2stream.static.StaticFiles` handler for paths no route matches.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import stat
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote

import h2.errors

from .bodies import BytesBody, ChunkBody, FileBody
from .session import Handler, Session, StreamState

log = logging.getLogger("h2stream.app")

HeaderList = Iterable[tuple[str | bytes, str | bytes]]


class PayloadTooLarge(Exception):
    """The request body exceeded the configured limit."""


class StreamClosed(Exception):
    """The client reset the stream or the connection went away."""


@dataclass(slots=True)
class FileResponse:
    """Part or all of a file, sent zero-copy on h2c. ``path`` or an open ``fd`` (then owned)."""

    path: str | None = None
    fd: int | None = None
    offset: int = 0
    length: int | None = None
    content_type: str = "application/octet-stream"


@dataclass(slots=True)
class Response:
    status: int = 200
    headers: HeaderList = ()
    body: bytes | str | FileResponse | AsyncIterable[bytes] | None = b""
    trailers: HeaderList | None = None
    content_type: str | None = None


def _to_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


def encode_headers(headers: HeaderList) -> list[tuple[bytes, bytes]]:
    """Lowercase names, bytes everywhere: what the session sends as is."""
    return [(_to_bytes(name).lower(), _to_bytes(value)) for name, value in headers]


class RequestBody:
    """Request body chunks as they arrive; window credit goes back only as they are read.

    At most one stream window of data can be queued here (the peer may not send more), so a
    slow handler slows the client instead of filling memory.
    """

    def __init__(self, session: Session, stream_id: int, limit: int) -> None:
        self._session = session
        self._stream_id = stream_id
        self._chunks: collections.deque[tuple[bytes, int]] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False
        self._error: BaseException | None = None
        self._limit = limit
        self.received = 0

    # RequestBodySink, called by the session
    def feed(self, data: bytes, flow_controlled_length: int) -> None:
        self.received += len(data)
        if self.received > self._limit:
            self._error = PayloadTooLarge(f"request body over {self._limit} bytes")
            # The credit of what we will never read goes back now.
            self._session.return_credit(self._stream_id, flow_controlled_length)
        else:
            self._chunks.append((data, flow_controlled_length))
        self._wake()

    def end(self, error: BaseException | None = None) -> None:
        self._ended = True
        if error is not None and self._error is None:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read(self) -> bytes:
        """The next chunk, or b"" at the end of the body."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._ended:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        if self._error is not None:
            raise self._error
        data, credit = self._chunks.popleft()
        self._session.return_credit(self._stream_id, credit)
        return data


class Request:
    """What a handler sees of one request."""

    def __init__(self, session: Session, stream: StreamState, body_limit: int) -> None:
        self._session = session
        self._stream = stream
        self.stream_id = stream.stream_id
        self.method = stream.method.decode("latin-1")
        raw_path = stream.path.decode("latin-1")
        path, _, self.query = raw_path.partition("?")
        self.raw_path = raw_path
        self.path = unquote(path)
        self.headers: list[tuple[str, str]] = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in stream.headers
            if not name.startswith(b":")
        ]
        self.authority = next(
            (v.decode("latin-1") for n, v in stream.headers if n == b":authority"), ""
        )
        self.request_id = stream.request_id
        self._body = RequestBody(session, stream.stream_id, body_limit)
        self._response: ResponseStream | None = None
        # True once a one-shot response (bytes or a file) has been handed to the session.
        self._answered = False
        if stream.request_ended:
            self._body.end()
        else:
            stream.request_body = self._body

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
        """The whole request body (bounded by the configured limit)."""
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
        self, status: int = 200, headers: HeaderList = (), *, content_type: str | None = None
    ) -> ResponseStream:
        """Send the response headers now; the body follows through the returned stream."""
        if self.started:
            raise RuntimeError("response already started")
        fields = encode_headers(headers)
        if content_type is not None:
            fields.append((b"content-type", content_type.encode()))
        body = ChunkBody()
        self._response = ResponseStream(self._session, self._stream, body)
        self._session.respond(self._stream, status, fields, body)
        self._session.wake()
        return self._response


class ResponseStream:
    """The body side of a started response. Each send returns once its bytes are framed."""

    def __init__(self, session: Session, stream: StreamState, body: ChunkBody) -> None:
        self._session = session
        self._stream = stream
        self._body = body
        self.ended = False

    async def send(self, chunk: bytes | bytearray | memoryview | str, *, end: bool = False) -> None:
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
        trailers: list[tuple[bytes, bytes]] | None,
    ) -> None:
        if self._stream.body is not self._body:
            raise StreamClosed(f"stream {self._stream.stream_id} is closed")
        if not chunk and not end:
            return
        self.ended = end
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._body.put(chunk, waiter, end, trailers)
        self._session.schedule(self._stream)
        self._session.wake()
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


@dataclass
class App:
    """Routes plus handlers. Unmatched paths fall through to ``fallback`` (a directory)."""

    fallback: Handler | None = None
    body_limit: int = 64 * 1024 * 1024
    _routes: dict[str, _Route] = field(default_factory=dict)
    _prefixes: list[_Route] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def route(
        self, path: str, methods: Iterable[str] = ("GET", "HEAD")
    ) -> Callable[[RouteHandler], RouteHandler]:
        """Register a handler for an exact path, or for a prefix when ``path`` ends in ``*``."""

        def register(handler: RouteHandler) -> RouteHandler:
            prefix = path.endswith("*")
            route = _Route(path.rstrip("*"), frozenset(m.upper() for m in methods), handler, prefix)
            if prefix:
                self._prefixes.append(route)
                self._prefixes.sort(key=lambda r: -len(r.path))
            else:
                self._routes[path] = route
            return handler

        return register

    def match(self, path: str) -> _Route | None:
        route = self._routes.get(path)
        if route is not None:
            return route
        for candidate in self._prefixes:
            if path.startswith(candidate.path):
                return candidate
        return None

    # The session handler: synchronous dispatch, a Task only for application routes.
    def __call__(
        self, session: Session, stream: StreamState, headers: list[tuple[bytes, bytes]]
    ) -> None:
        raw = stream.path
        query = raw.find(b"?")
        path = unquote((raw if query < 0 else raw[:query]).decode("latin-1"))
        route = self.match(path)
        if route is None:
            if self.fallback is not None:
                self.fallback(session, stream, headers)
            else:
                session.respond_bytes(stream, 404, b"not found\n")
            return
        if stream.method.decode("latin-1") not in route.methods:
            allow = ", ".join(sorted(route.methods)).encode()
            session.respond_bytes(stream, 405, b"method not allowed\n", extra=[(b"allow", allow)])
            return
        request = Request(session, stream, self.body_limit)
        task = asyncio.get_running_loop().create_task(self._run(route.handler, request, session))
        stream.task = task
        # A reference until done: the loop keeps only weak ones.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, handler: RouteHandler, request: Request, session: Session) -> None:
        stream = request._stream
        try:
            result = await handler(request)
            if result is not None:
                await send_response(request, result)
            elif not request.started:
                raise RuntimeError("handler returned no response and started none")
            elif request._response is not None and not request._response.ended:
                await request._response.end()
        except (asyncio.CancelledError, StreamClosed):
            pass  # the client went away: nothing to answer
        except PayloadTooLarge:
            _fail(session, request, 413, h2.errors.ErrorCodes.CANCEL)
        except Exception:
            log.exception(
                "handler failed: request_id=%s stream=%d %s %s",
                request.request_id,
                stream.stream_id,
                request.method,
                request.raw_path,
            )
            _fail(session, request, 500, h2.errors.ErrorCodes.INTERNAL_ERROR)
        finally:
            session.wake()


def _fail(session: Session, request: Request, status: int, code: h2.errors.ErrorCodes) -> None:
    """Before the headers: an error status. After: RST_STREAM (the body is broken)."""
    stream = request._stream
    if stream.stream_id not in session.streams:
        return
    if not request.started:
        message = b"payload too large\n" if status == 413 else b"internal server error\n"
        session.respond_bytes(stream, status, message)
        if not stream.request_ended:
            # Stop the upload we will not read (RFC 9113 section 8.1: NO_ERROR after a
            # complete response lets the client know the rest is not wanted).
            session.reset(stream.stream_id, h2.errors.ErrorCodes.NO_ERROR)
    else:
        session.reset(stream.stream_id, code)


async def send_response(request: Request, response: Response) -> None:
    """Send a returned :class:`Response` with the body path that fits it."""
    session, stream = request._session, request._stream
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
        fields.append((b"content-length", b"%d" % len(data)))
        if trailers is None:
            request._answered = True
            session.respond(stream, response.status, fields, None if head else BytesBody(data))
            session.wake()
            return
        out = request.start_response(response.status, fields)
        if not head:
            await out.send(data)
        await out.end(response.trailers)
        return
    if isinstance(body, FileResponse):
        _send_file(request, response.status, fields, body, head)
        return
    out = request.start_response(response.status, fields)
    if not head:
        async for chunk in body:
            await out.send(chunk)
    await out.end(response.trailers)


def _send_file(
    request: Request,
    status: int,
    fields: list[tuple[bytes, bytes]],
    spec: FileResponse,
    head: bool,
) -> None:
    session, stream = request._session, request._stream
    fd = spec.fd if spec.fd is not None else os.open(spec.path or "", os.O_RDONLY | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("FileResponse needs a regular file")
        length = spec.length if spec.length is not None else max(0, info.st_size - spec.offset)
        length = min(length, max(0, info.st_size - spec.offset))
    except BaseException:
        os.close(fd)
        raise
    fields.append((b"content-length", b"%d" % length))
    if not any(name == b"content-type" for name, _ in fields):
        fields.append((b"content-type", spec.content_type.encode()))
    request._answered = True
    if head or length == 0:
        os.close(fd)
        session.respond(stream, status, fields, None)
    else:
        session.respond(stream, status, fields, FileBody(fd, spec.offset, length, _FdCloser(fd)))
    session.wake()


class _FdCloser:
    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)
