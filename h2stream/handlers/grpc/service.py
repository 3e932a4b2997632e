"""The method registry and the exchange handler that serves gRPC calls.

Handlers by kind (``request`` is a message, deserialized when a deserializer is given; ``call``
is the :class:`Call`, an async iterator of request messages for client and bidirectional
streams)::

    @service.unary("/pkg.Svc/Get")              async def get(request, call) -> reply
    @service.server_stream("/pkg.Svc/List")     async def list_(request, call): yield reply
    @service.client_stream("/pkg.Svc/Put")      async def put(call, call_) -> reply
    @service.bidi_stream("/pkg.Svc/Chat")       async def chat(call, call_): yield reply

Status: a handler raises :class:`GrpcError` for its own status; any other exception is
INTERNAL (its text sent only with ``expose_errors``). ``grpc-timeout`` cancels the handler
(its ``finally`` runs) and ends the call DEADLINE_EXCEEDED; a client's RST_STREAM cancels it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any

from h2stream.config import Config
from h2stream.core.exchange import Exchange, Handler, Headers
from h2stream.handlers.grpc.body import DEFAULT_HIGH_WATER, SOLO_HIGH_WATER, MessageBody
from h2stream.handlers.grpc.health import HEALTH, HEALTH_CHECK, health_check
from h2stream.handlers.grpc.stats import GRPC_STATS
from h2stream.handlers.grpc.wire import (
    ACCEPT_ENCODING,
    CONTENT_TYPE,
    DEFAULT_MAX_MESSAGE,
    PREFIX,
    GrpcError,
    MessageReader,
    Status,
    gzip_compress,
    parse_timeout,
    status_fields,
)

log = logging.getLogger("h2stream.grpc")

MethodHandler = Callable[..., Any]
_OK_TRAILERS = status_fields(Status.OK)
_PREFIX_PLAIN = PREFIX.pack
UNKNOWN_METHOD = "unknown"
_TYPE_END = len(CONTENT_TYPE)
# The access log's note per status (the code as grpc-status carries it).
_NOTES = {status: f"grpc-status={int(status)}" for status in Status}


@dataclass(slots=True, frozen=True)
class Method:
    """A registered method: its handler, its kind, and its optional (de)serializers."""

    name: bytes
    handler: MethodHandler
    request_streaming: bool
    response_streaming: bool
    deserialize: Callable[[bytes], Any] | None = None
    serialize: Callable[[Any], bytes] | None = None


class Call:
    """One gRPC call as its handler sees it: metadata, request messages, replies."""

    __slots__ = (
        "_body",
        "_exchange",
        "_gzip_out",
        "_method",
        "_reader",
        "_started",
        "deadline_hit",
        "metadata",
        "status",
    )

    def __init__(
        self,
        exchange: Exchange,
        method: Method,
        reader: MessageReader,
        gzip_out: bool,
        high_water: int,
        solo_high_water: int,
    ) -> None:
        self._exchange = exchange
        self._method = method
        self._reader = reader
        self._gzip_out = gzip_out
        self._body = MessageBody(exchange, high_water, solo_high_water)
        self._started = False
        self.deadline_hit = False
        # How the call ended (None while running; CANCELLED when the client went away).
        self.status: Status | None = None
        # The request's header fields (names lowercase), pseudo-headers included.
        self.metadata: Headers = exchange.headers

    @property
    def method(self) -> str:
        return self._method.name.decode("latin-1")

    @property
    def messages_out(self) -> int:
        return self._body.messages_out

    def header(self, name: str) -> str | None:
        key = name.lower().encode("latin-1")
        for field, value in self.metadata:
            if field == key:
                return value.decode("latin-1")
        return None

    async def read(self) -> Any:
        """The next request message (deserialized), or None after the last."""
        payload = await self._reader.read()
        if payload is None:
            return None
        deserialize = self._method.deserialize
        return payload if deserialize is None else deserialize(payload)

    def __aiter__(self) -> Call:
        return self

    async def __anext__(self) -> Any:
        message = await self.read()
        if message is None:
            raise StopAsyncIteration
        return message

    async def send(self, message: Any) -> None:
        """Queue a reply; waits only while the backlog is over high water (see body.py)."""
        self._push(message)
        body = self._body
        if body.over_high_water:
            await body.drained()

    def _push(self, message: Any) -> None:
        serialize = self._method.serialize
        payload = message if serialize is None else serialize(message)
        if self._gzip_out:
            payload = gzip_compress(payload)
            prefix = _PREFIX_PLAIN(1, len(payload))
        else:
            prefix = _PREFIX_PLAIN(0, len(payload))
        self._body.push(prefix, payload, self._started)
        if not self._started:
            self._start()

    def record(self) -> None:
        """Add the ended call to the per-method counters."""
        body, reader = self._body, self._reader
        status = self.status if self.status is not None else Status.CANCELLED
        GRPC_STATS.call_ended(
            self.method,
            status.name,
            reader.messages_in,
            reader.bytes_in,
            body.messages_out,
            body.bytes_out,
        )

    def _start(self) -> None:
        self._started = True
        headers = [(b"content-type", CONTENT_TYPE), (b"grpc-accept-encoding", ACCEPT_ENCODING)]
        if self._gzip_out:
            headers.append((b"grpc-encoding", b"gzip"))
        exchange = self._exchange
        exchange.respond(200, headers, self._body)
        # Headers and the first messages go out at the session's next turn, not at the
        # client's next frame.
        exchange.wake()

    def finish(self, status: Status, message: str = "") -> None:
        """End the call: trailers after the replies, or a trailers-only response."""
        exchange = self._exchange
        if not exchange.open:
            return
        self.status = status
        # Before the answer: a trailers-only one ends the exchange (and logs it) at once.
        exchange.log_note = _NOTES[status]
        trailers = _OK_TRAILERS if status is Status.OK else status_fields(status, message)
        if self._started:
            self._body.finish(trailers, True)
        else:
            trailers_only = [(b"content-type", CONTENT_TYPE), *trailers]
            exchange.respond(200, trailers_only, None)
            exchange.wake()

    def finish_with(self, reply: Any) -> None:
        """A unary reply and OK in one response (headers, one message, trailers)."""
        self._body.finish(_OK_TRAILERS, False)
        self.status = Status.OK
        self._exchange.log_note = _NOTES[Status.OK]
        self._push(reply)


@dataclass
class GrpcService:
    """gRPC methods by full name, served as an exchange handler (HTTP/2 only).

    Requests that are not gRPC (another content type) go to ``fallback`` when there is one.
    ``max_message``: the largest request message (RESOURCE_EXHAUSTED past it);
    ``expose_errors``: send a failing handler's exception text in grpc-message (both None:
    the server's --grpc-max-message-size and --grpc-expose-errors once bound, else 4 MiB
    and no); ``high_water``: reply bytes a stream may queue ahead of framing, and
    ``solo_high_water`` what it may grow to while the scheduler serves it alone with the
    windows for larger turns (set it to ``high_water`` for a fixed bound; body.py).
    """

    fallback: Handler | None = None
    max_message: int | None = None
    expose_errors: bool | None = None
    high_water: int = DEFAULT_HIGH_WATER
    solo_high_water: int = SOLO_HIGH_WATER
    health: bool = True

    def __post_init__(self) -> None:
        self._max_message = self.max_message or DEFAULT_MAX_MESSAGE
        self._expose_errors = bool(self.expose_errors)
        self._methods: dict[bytes, Method] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        if self.health:
            self.add(HEALTH_CHECK, health_check, False, False)

    def bind(self, config: Config) -> GrpcService:
        """Take the server's gRPC options where the service left them unset."""
        if self.max_message is None:
            self._max_message = config.grpc_max_message_size
        if self.expose_errors is None:
            self._expose_errors = config.grpc_expose_errors
        return self

    # -- registration ---------------------------------------------------------------------

    def add(
        self,
        name: str,
        handler: MethodHandler,
        request_streaming: bool,
        response_streaming: bool,
        deserialize: Callable[[bytes], Any] | None = None,
        serialize: Callable[[Any], bytes] | None = None,
    ) -> None:
        if not name.startswith("/") or name.count("/") != 2:
            raise ValueError(f"gRPC method {name!r}: expected /package.Service/Method")
        key = name.encode("ascii")
        # Health checks know the service by name from now on.
        HEALTH.services.add(name.split("/")[1])
        self._methods[key] = Method(
            key, handler, request_streaming, response_streaming, deserialize, serialize
        )

    def _decorator(
        self, name: str, request_streaming: bool, response_streaming: bool, **codec: Any
    ) -> Callable[[MethodHandler], MethodHandler]:
        def register(handler: MethodHandler) -> MethodHandler:
            self.add(name, handler, request_streaming, response_streaming, **codec)
            return handler

        return register

    def unary(self, name: str, **codec: Any) -> Callable[[MethodHandler], MethodHandler]:
        return self._decorator(name, False, False, **codec)

    def server_stream(self, name: str, **codec: Any) -> Callable[[MethodHandler], MethodHandler]:
        return self._decorator(name, False, True, **codec)

    def client_stream(self, name: str, **codec: Any) -> Callable[[MethodHandler], MethodHandler]:
        return self._decorator(name, True, False, **codec)

    def bidi_stream(self, name: str, **codec: Any) -> Callable[[MethodHandler], MethodHandler]:
        return self._decorator(name, True, True, **codec)

    @property
    def tasks(self) -> frozenset[asyncio.Task[None]]:
        return frozenset(self._tasks)

    # -- the exchange handler -------------------------------------------------------------

    def is_grpc(self, exchange: Exchange) -> bool:
        """application/grpc, its +proto/+json variants, with parameters or not (not
        application/grpc-web, a different framing)."""
        for name, value in exchange.headers:
            if name == b"content-type":
                return value.startswith(CONTENT_TYPE) and value[_TYPE_END : _TYPE_END + 1] in (
                    b"",
                    b"+",
                    b";",
                )
        return False

    def __call__(self, exchange: Exchange) -> None:
        if not self.is_grpc(exchange):
            if self.fallback is not None:
                self.fallback(exchange)
            else:
                exchange.respond_bytes(415, b"gRPC only: content-type application/grpc\n")
            return
        self.serve(exchange)

    def serve(self, exchange: Exchange) -> None:
        """Serve a request already known to be gRPC (:meth:`is_grpc`)."""
        if exchange.http_version != "2":
            exchange.respond_bytes(505, b"gRPC needs HTTP/2\n")
            return
        if exchange.method != b"POST":
            exchange.respond_bytes(405, b"gRPC calls are POST\n", extra=[(b"allow", b"POST")])
            return
        te = timeout = encoding = accept = b""
        for name, value in exchange.headers:
            if name == b"te":
                te = value
            elif name == b"grpc-timeout":
                timeout = value
            elif name == b"grpc-encoding":
                encoding = value
            elif name == b"grpc-accept-encoding":
                accept = value
        method = self._methods.get(exchange.path)
        if method is None:
            # Counted under one name: the path is the client's to choose.
            _refuse(exchange, UNKNOWN_METHOD, Status.UNIMPLEMENTED, "unknown method")
            return
        method_name = method.name.decode("latin-1")
        if b"trailers" not in te:
            _refuse(exchange, method_name, Status.INTERNAL, "te: trailers is required")
            return
        if encoding not in (b"", b"identity", b"gzip"):
            _refuse(exchange, method_name, Status.UNIMPLEMENTED, "unsupported grpc-encoding")
            return
        gzip_in = encoding == b"gzip"
        # Replies are compressed when the client compressed its request and accepts gzip back.
        gzip_out = gzip_in and b"gzip" in accept
        reader = MessageReader(exchange, self._max_message, gzip_in)
        call = Call(exchange, method, reader, gzip_out, self.high_water, self.solo_high_water)
        if not method.request_streaming and not timeout:
            # One request message: the handler starts once the request is complete, in the
            # same turn, and without a task unless it suspends (see _start). With a deadline
            # it starts at once, so that the deadline also covers a request slow to arrive.
            reader.on_end = lambda: self._start(method, call)
            exchange.read_body(reader)
            return
        exchange.read_body(reader)
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._run(method, call))
        self._track(exchange, task)
        seconds = parse_timeout(timeout) if timeout else None
        if seconds is not None:
            timer = loop.call_later(seconds, _deadline, call, task)
            task.add_done_callback(lambda _: timer.cancel())

    def _track(self, exchange: Exchange, task: asyncio.Task[None]) -> None:
        exchange.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start(self, method: Method, call: Call) -> None:
        """Run a call's handler now, up to where it first suspends: most unary handlers never
        do, and then the call costs no task and no loop turn, its answer going out with the
        session's pump at the end of the read that completed the request (a task costs about
        a fifth of a small call's CPU). One that suspends goes on in a task, as if it had run
        in one from the start: its own context copy throughout, and a current task meanwhile
        that stands for it (``asyncio.current_task()`` is that stand-in until the first
        suspension, the task after)."""
        coro = self._run(method, call)
        loop = asyncio.get_running_loop()
        if asyncio.current_task(loop) is not None:
            # Called from inside a task (a test driving the session): no inline run there.
            self._track(call._exchange, loop.create_task(coro))
            return
        # As a task would: its own copy of the context, and a current task (see _StandIn).
        context = contextvars.copy_context()
        stand_in = _StandIn(loop)
        _enter_task(loop, stand_in)
        try:
            waiting = context.run(coro.send, None)
        except StopIteration:
            return
        finally:
            _leave_task(loop, stand_in)
        task = loop.create_task(_Resumed(coro, waiting), context=context)
        stand_in.became(task)
        self._track(call._exchange, task)

    async def _run(self, method: Method, call: Call) -> None:
        exchange = call._exchange
        try:
            if method.request_streaming:
                argument: Any = call
            else:
                argument = await _single(call)
            if method.response_streaming:
                send = call.send
                async for reply in method.handler(argument, call):
                    await send(reply)
                call.finish(Status.OK)
            else:
                call.finish_with(await method.handler(argument, call))
        except asyncio.CancelledError:
            if call.deadline_hit:
                call.finish(Status.DEADLINE_EXCEEDED, "deadline exceeded")
            # Otherwise the client went away: nothing to answer.
        except ConnectionResetError:
            pass  # the stream was reset under a send
        except GrpcError as exc:
            call.finish(exc.status, exc.message)
        except Exception as exc:
            log.exception("gRPC handler failed: %s stream=%d", call.method, exchange.stream_id)
            call.finish(Status.INTERNAL, str(exc) if self._expose_errors else "internal error")
        finally:
            call.record()
            exchange.wake()


async def _single(call: Call) -> Any:
    """A unary request: exactly one message."""
    message = await call.read()
    if message is None:
        raise GrpcError(Status.UNIMPLEMENTED, "expected one request message, got none")
    if await call._reader.read() is not None:
        raise GrpcError(Status.UNIMPLEMENTED, "expected one request message, got more")
    return message


class _StandIn:
    """What ``asyncio.current_task()`` answers while a handler runs inline (GrpcService._start):
    the task it goes on in if it suspends. Whatever kept it then (``asyncio.timeout``, a task
    group, a client library's timer) reaches that task through it; a cancellation asked for
    before the task exists (only the handler itself can) is handed on when it does."""

    __slots__ = ("_cancel", "_loop", "_task")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._task: asyncio.Task[None] | None = None
        self._cancel: list[Any] | None = None

    def became(self, task: asyncio.Task[None]) -> None:
        self._task = task
        for message in self._cancel or ():
            task.cancel(message)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def cancel(self, msg: Any = None) -> bool:
        if self._task is not None:
            return self._task.cancel(msg)
        if self._cancel is None:
            self._cancel = []
        self._cancel.append(msg)
        return True

    def cancelling(self) -> int:
        if self._task is not None:
            return self._task.cancelling()
        return len(self._cancel or ())

    def uncancel(self) -> int:
        if self._task is not None:
            return self._task.uncancel()
        if self._cancel:
            self._cancel.pop()
        return len(self._cancel or ())

    def done(self) -> bool:
        return self._task is not None and self._task.done()

    def __getattr__(self, name: str) -> Any:
        task = self._task
        if task is None:
            raise AttributeError(f"{name}: the handler has not suspended yet")
        return getattr(task, name)


_enter_task: Callable[[Any, Any], None] = asyncio.tasks._enter_task
_leave_task: Callable[[Any, Any], None] = asyncio.tasks._leave_task


class _Resumed(Coroutine[Any, Any, None]):
    """A handler coroutine that suspended outside any task, as a task's coroutine: the
    task's first step is handed what it waits on; after that every send and throw (a
    future's wakeup, a cancellation) goes straight in, as ``yield from`` would. A cancellation
    before that first step (the stream reset in the same read) is thrown in at the await,
    whose future is cancelled as a task's own cancel() would."""

    __slots__ = ("_coro", "_waiting")

    def __init__(self, coro: Coroutine[Any, Any, None], waiting: Any) -> None:
        self._coro = coro
        self._waiting: Any = waiting

    def send(self, value: Any) -> Any:
        waiting = self._waiting
        if waiting is not _STARTED:
            self._waiting = _STARTED
            return waiting
        return self._coro.send(value)

    def __next__(self) -> Any:  # the C task steps a coroutine that is not native by this
        return self.send(None)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        waiting = self._waiting
        if waiting is not _STARTED:
            self._waiting = _STARTED
            if asyncio.isfuture(waiting):
                waiting.cancel()
        if val is None and tb is None:
            return self._coro.throw(typ)
        return self._coro.throw(typ, val, tb)  # pragma: no cover - the old signature

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, None]:  # pragma: no cover - only tasks run it
        raise TypeError("a resumed handler runs only in its task")


_STARTED = object()


def _deadline(call: Call, task: asyncio.Task[None]) -> None:
    call.deadline_hit = True
    task.cancel()


def _refuse(exchange: Exchange, method: str, status: Status, message: str) -> None:
    """A trailers-only answer before any handler runs."""
    exchange.log_note = _NOTES[status]
    exchange.respond(200, [(b"content-type", CONTENT_TYPE), *status_fields(status, message)], None)
    GRPC_STATS.call_ended(method, status.name, 0, 0, 0, 0)


AsyncReplies = AsyncIterator[Any]
UnaryHandler = Callable[[Any, Call], Awaitable[Any]]

__all__ = ["HEALTH", "Call", "GrpcService", "Method"]
