"""One ASGI request's ``receive`` and ``send``, on one exchange.

``send`` hands each body chunk to a :class:`~h2stream.body.bodies.ChunkBody` and awaits the
future that resolves once the chunk is framed into the peer's window: at most one chunk per
stream is ever held, and a client that does not read stops the app at its ``await send()``.
``receive`` takes request body chunks as they arrive; their window credit goes back only when
the app has been handed them, so a slow reader slows the client instead of filling memory.

The channel also stands in for the app's task on the exchange (``exchange.task``): when the
client resets the stream or the connection goes, the connection "cancels" it, which here means
``http.disconnect`` for ``receive`` and :class:`ClientDisconnected` (an ``OSError``, as ASGI
2.4 asks) for ``send``, so the app's own cleanup runs instead of a CancelledError at an
arbitrary await.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from h2stream.body.bodies import ChunkBody, FdCloser, FileBody
from h2stream.core import requestid
from h2stream.core.exchange import Exchange, Headers, ResetCode
from h2stream.core.framing import BytesBody
from h2stream.core.stats import STATS
from h2stream.handlers.asgi.types import AsgiApp, Message, Scope
from h2stream.handlers.bodyqueue import BodyQueue

log = logging.getLogger("h2stream.asgi")

# Copy-path chunks when a zerocopysend cannot go as one file body (more_body, trailers).
FILE_CHUNK = 256 * 1024

_DISCONNECT: Message = {"type": "http.disconnect"}


class ClientDisconnected(ConnectionResetError):
    """``send()`` after the client reset the stream or the connection went away."""


class _Gone:
    """What a finished channel holds instead of its exchange: nothing is owed to it."""

    open = False
    stream_id = 0

    def consumed(self, length: int) -> None:
        pass

    def reset(self, code: ResetCode) -> None:
        pass


_GONE: Any = _Gone()


def _fields(raw: Any) -> Headers:
    """Header pairs as the exchange sends them: bytes, names lowercase (HTTP/2 requires it).

    The app's own list when it already is that, in tuples (frameworks send lowercase bytes):
    the exchange copies it into the response head at once and never changes it."""
    if type(raw) is list:
        for pair in raw:
            if type(pair) is not tuple or len(pair) != 2:
                break
            name, value = pair
            if type(name) is not bytes or type(value) is not bytes or not name.islower():
                break
        else:
            return raw
    return [(bytes(name).lower(), bytes(value)) for name, value in raw]


class _LastFields:
    """The response field list an app sent last, and ours equal to it.

    Frameworks build a new list per response, most often equal to the one before: handing
    the exchange one list object for all of them skips the conversion and lets the response
    head's encoding be reused (h2conn memoizes it per list object). Only a list that was
    already bytes tuples is kept, as our own copy: nothing an app does later reaches it."""

    __slots__ = ("_ours",)

    def __init__(self) -> None:
        self._ours: Headers | None = None

    def fields(self, raw: Any) -> Headers:
        ours = self._ours
        if ours is not None and type(raw) is list and raw == ours:
            return ours
        fields = _fields(raw)
        if fields is raw:
            fields = self._ours = raw.copy()
        return fields


_LAST_FIELDS = _LastFields()


class Channel:
    """The request/response state of one ASGI HTTP request (RequestBodySink and Cancellable
    for its exchange)."""

    __slots__ = (
        "_awaiting_trailers",
        "_body",
        "_body_end_sent",
        "_disconnected",
        "_done",
        "_ended",
        "_exchange",
        "_finished",
        "_head",
        "_headers",
        "_limit",
        "_queue",
        "_started",
        "_status",
        "_task",
        "_trailers",
        "_trailers_expected",
        "_waiter",
    )

    def __init__(self, exchange: Exchange, limit: int) -> None:
        self._exchange = exchange
        self._limit = limit
        # Request body chunks, their credit given back as the app receives them: made with
        # the first chunk (most requests have none).
        self._queue: BodyQueue | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False  # the request body is complete (or broken)
        self._body_end_sent = False  # the app was given more_body=False
        self._disconnected = False
        self._status = 0
        self._headers: Headers = []
        self._head = exchange.method == b"HEAD"
        self._trailers_expected = False
        self._trailers: Headers | None = None
        self._awaiting_trailers = False  # the body ended; announced trailers still to come
        self._body: ChunkBody | None = None
        self._started = False  # the response headers went to the exchange
        self._done = False  # the whole response is with the exchange
        self._finished = False  # the app's coroutine returned
        self._task: asyncio.Task[None] | None = None  # see adopt
        if exchange.request_ended:
            self._ended = True  # what read_body would say at once, without the calls
        else:
            exchange.read_body(self)

    @property
    def buffered(self) -> int:
        """Request body bytes received but not yet handed to the app (what the server holds)."""
        queue = self._queue
        return 0 if queue is None else queue.buffered

    # -- RequestBodySink ------------------------------------------------------------------

    def feed(self, data: bytes, flow_controlled_length: int) -> None:
        if self._ended or self._disconnected:
            # Nobody will read it: its credit goes back at once.
            self._exchange.consumed(flow_controlled_length)
            return
        queue = self._queue
        if queue is None:
            queue = self._queue = BodyQueue(self._exchange, self._limit)
        if not queue.push(data, flow_controlled_length):
            self._too_large()
            return
        self._wake()

    def end(self, error: BaseException | None = None) -> None:
        self._ended = True
        if error is not None:
            self._disconnect()
        elif self._waiter is not None:
            self._wake()

    # -- Cancellable: the connection's view of the app's task -----------------------------

    def done(self) -> bool:
        return self._finished

    def cancel(self, msg: str | None = None) -> bool:
        self._disconnect()
        return True

    def _disconnect(self) -> None:
        if self._disconnected:
            return
        self._disconnected = True
        if self._queue is not None:
            self._queue.discard()
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _too_large(self) -> None:
        """The body crossed the limit while arriving: answer now, stop the upload."""
        STATS.request_body_too_large += 1
        exchange = self._exchange
        if exchange.open:
            if self._started:
                exchange.reset(ResetCode.CANCEL)
            else:
                self._started = self._done = True
                exchange.answer_and_stop(413, b"payload too large\n")
                exchange.wake()
        self._disconnect()

    # -- receive ---------------------------------------------------------------------------

    async def receive(self) -> Message:
        while True:
            queue = self._queue
            data = None if queue is None else queue.take()
            if data is not None:
                last = self._ended and not queue
                self._body_end_sent = last
                return {"type": "http.request", "body": data, "more_body": not last}
            if self._disconnected or self._done:
                return _DISCONNECT
            if self._ended and not self._body_end_sent:
                self._body_end_sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            # Wait for a chunk, the end of the body, or (after it) the client going away.
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter

    # -- send ------------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        if self._disconnected:
            raise ClientDisconnected(f"stream {self._exchange.stream_id}: the client went away")
        kind = message["type"]
        if kind == "http.response.body":
            more = message.get("more_body", False)
            if not more and self._status and not self._started and not self._trailers_expected:
                # The whole body in one message (the common case): one answer, no handover.
                self._answer(message.get("body", b""))
                return
            await self._send_body(message.get("body", b""), more)
        elif kind == "http.response.start":
            if self._status:
                raise RuntimeError("http.response.start sent twice")
            self._status = int(message["status"])
            self._headers = _LAST_FIELDS.fields(message.get("headers", ()))
            self._trailers_expected = bool(message.get("trailers", False))
        elif kind == "http.response.pathsend":
            self._send_path(message["path"])
        elif kind == "http.response.zerocopysend":
            await self._send_file(message)
        elif kind == "http.response.trailers":
            await self._send_trailers(message)
        else:
            raise ValueError(f"unexpected ASGI message type {kind!r}")

    def _answer(self, data: bytes) -> None:
        """Headers and the whole body to the exchange at once; the bytes stay referenced by
        it until framed, as a chunk would."""
        self._started = self._done = True
        exchange = self._exchange
        exchange.respond(
            self._status, self._headers, BytesBody(data) if data and not self._head else None
        )
        exchange.wake()
        if self._waiter is not None:
            self._wake()  # a receive() waiting now gets http.disconnect

    def _check_body_allowed(self) -> None:
        if not self._status:
            raise RuntimeError("response body before http.response.start")
        if self._done:
            raise RuntimeError("the response is already complete")

    async def _send_body(self, data: bytes, more: bool) -> None:
        self._check_body_allowed()
        if not self._started:
            if not more and not self._trailers_expected:
                self._answer(data)
                return
            self._start_stream()
        if self._body is None:  # HEAD: the body is discarded
            if not more:
                if self._trailers_expected:
                    self._awaiting_trailers = True
                else:
                    self._complete()
            return
        if data or not more:
            await self._put(data, not more and not self._trailers_expected, None)
        if not more:
            if self._trailers_expected:
                self._awaiting_trailers = True
            else:
                self._complete()

    def _complete(self) -> None:
        """The whole response is with the exchange: a receive() waiting now gets
        http.disconnect (the spec's answer once the response has been sent)."""
        self._done = True
        self._wake()

    def _start_stream(self) -> None:
        self._started = True
        body = None if self._head else ChunkBody()
        self._body = body
        self._exchange.respond(self._status, self._headers, body)
        self._exchange.wake()

    async def _put(self, data: bytes | memoryview, end: bool, trailers: Headers | None) -> None:
        body = self._body
        assert body is not None
        exchange = self._exchange
        if not exchange.open:
            raise ClientDisconnected(f"stream {exchange.stream_id} is closed")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        body.put(data, waiter, end, trailers)
        exchange.body_ready()
        try:
            await waiter
        except ConnectionResetError as exc:
            raise ClientDisconnected(str(exc)) from None

    async def _send_trailers(self, message: Message) -> None:
        if not self._awaiting_trailers:
            raise RuntimeError("http.response.trailers without trailers announced in start")
        trailers = self._trailers
        if trailers is None:
            trailers = self._trailers = []
        trailers.extend(_fields(message.get("headers", ())))
        if message.get("more_trailers", False):
            return
        body_sent = self._body is not None  # HEAD: no body, no trailers
        if body_sent:
            # No fields at all: the body simply ends (an empty HEADERS frame says nothing).
            await self._put(b"", True, trailers or None)
        self._complete()

    def _send_path(self, path: str) -> None:
        """The whole file at ``path`` by the static files' zero-copy/copy rules."""
        self._check_body_allowed()
        if self._started:
            raise RuntimeError("http.response.pathsend after the body started")
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
        except BaseException:
            os.close(fd)
            raise
        self._respond_file(fd, 0, size)

    def _respond_file(self, fd: int, offset: int, length: int) -> None:
        closer = FdCloser(fd)
        headers = self._headers
        if not any(name == b"content-length" for name, _ in headers):
            # A new list: it may be the app's own (see _fields).
            headers = [*headers, (b"content-length", b"%d" % length)]
        self._started = True
        self._complete()
        body = None
        if self._head or length == 0:
            closer.close()
        else:
            body = FileBody(fd, offset, length, closer)
        self._exchange.respond(self._status, headers, body)
        self._exchange.wake()

    async def _send_file(self, message: Message) -> None:
        """``http.response.zerocopysend``: a file range, zero-copy when it is the whole rest
        of the response, else read into chunks (the copy path) between other chunks."""
        self._check_body_allowed()
        fd = message["file"].fileno()
        offset = message.get("offset")
        if offset is None:
            offset = os.lseek(fd, 0, os.SEEK_CUR)
        count = message.get("count")
        if count is None:
            count = max(0, os.fstat(fd).st_size - offset)
        more = message.get("more_body", False)
        if not self._started and not more and not self._trailers_expected:
            # The body holds its own descriptor: the app may close its file once send returns.
            self._respond_file(os.dup(fd), offset, count)
            return
        while count > 0:
            data = os.pread(fd, min(FILE_CHUNK, count), offset)
            if not data:
                break
            offset += len(data)
            count -= len(data)
            await self._send_body(data, True)
        if not more:
            await self._send_body(b"", False)

    # -- the app's coroutine ---------------------------------------------------------------

    def adopt(self, task: asyncio.Task[None], tasks: set[asyncio.Task[None]]) -> None:
        """``task`` runs :meth:`run` and has not ended: it stays in ``tasks`` until then."""
        self._task = task
        tasks.add(task)

    async def run(self, app: AsgiApp, scope: Scope, tasks: set[asyncio.Task[None]]) -> None:
        """Run the app on this request; ``tasks`` is the handler's set of running app tasks,
        which this one leaves as it ends (cheaper than a done callback, a loop turn later)."""
        exchange = self._exchange
        try:
            await app(scope, self.receive, self.send)
        except ClientDisconnected:
            pass  # the client went away: nothing left to answer
        except asyncio.CancelledError:
            pass  # the loop is closing
        except Exception:
            if not exchange.request_id:
                # The id the 500 carries (respond adds x-request-id) and the log line names.
                exchange.request_id = requestid.generate()
            log.exception(
                "ASGI app failed: request_id=%s stream=%d %s %s",
                exchange.request_id,
                exchange.stream_id,
                exchange.method.decode("latin-1"),
                exchange.path.decode("latin-1"),
            )
            self._fail()
        else:
            if not self._done and not self._disconnected:
                log.error(
                    "ASGI app returned without completing the response: stream=%d %s",
                    exchange.stream_id,
                    exchange.path.decode("latin-1"),
                )
                self._fail()
        finally:
            self._finished = True
            if self._waiter is not None:
                self._wake()
            self._let_go(exchange)
            task, self._task = self._task, None
            if task is not None:  # None: it ended in its first step (never adopted)
                tasks.discard(task)

    def _let_go(self, exchange: Exchange) -> None:
        """Break the channel <-> exchange cycle once the app is done with the request: the
        stream holds the channel (its task and body reader) until it ends, and a cycle per
        request would leave every request's objects to the garbage collector."""
        if exchange.task is self:
            exchange.task = None
        if self._ended:
            # Nothing more arrives: unread chunks' credit goes back, then the exchange goes.
            if self._queue is None and self._waiter is None:
                self._disconnected = True  # all _disconnect would do here
            else:
                self._disconnect()
            self._exchange = _GONE

    def _fail(self) -> None:
        """Before the headers: 500. After: a reset (the body is broken, never complete)."""
        exchange = self._exchange
        # A complete response stays complete (Starlette sends its own 500, then re-raises).
        if not exchange.open or self._disconnected or self._done:
            return
        if not self._started:
            self._started = self._done = True
            exchange.answer_and_stop(500, b"internal server error\n")
        else:
            exchange.reset(ResetCode.INTERNAL_ERROR)
        exchange.wake()
