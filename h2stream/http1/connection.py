"""One HTTP/1.1 (or 1.0) connection's state, with no I/O.

Bytes go in through :meth:`Http1Connection.receive`, parsed by llhttp (``httptools``); each
request becomes an :class:`Http1Exchange` handed to the same handler HTTP/2 streams get. Output
goes out through an :class:`Http1Sink`: the response head as raw bytes, the body as the
HTTP/2 DATA frames every :class:`~h2stream.core.framing.Body` already writes, which the sink
unwraps into raw bytes (``content-length``) or chunks (``transfer-encoding: chunked``).

Requests are answered one at a time, in order. Pipelined requests are parsed ahead (their body
bytes kept) up to ``http1_pipeline_depth``; past that, or while a handler leaves body bytes
unread, the connection asks the I/O layer to stop reading, so TCP's window is the flow control.
"""

from __future__ import annotations

import collections
import http
import logging
import time
from collections.abc import Callable
from typing import Protocol

import httptools

from h2stream.config import Config
from h2stream.core import requestid
from h2stream.core import sniff as h2c
from h2stream.core.exchange import (
    NO_ADDRESSES,
    TEXT_PLAIN,
    Addresses,
    Cancellable,
    ExchangeObserver,
    Handler,
    Headers,
    RequestBodySink,
    ResetCode,
)
from h2stream.core.framing import Body, BytesBody, FrameSink
from h2stream.core.limits import limit_event
from h2stream.core.session import DATES, SERVER_NAME
from h2stream.core.stats import STATS

log = logging.getLogger("h2stream.http1")

# The frame size bodies are asked for: each DATA frame they write becomes one write (raw) or
# one chunk. A file body's last frame goes by the copy path (FileBody's rule), the rest is one
# sendfile; 64 KiB keeps that tail small and a generated body's chunks large.
MAX_FRAME = 65536
# Bytes one body may write per turn before the loop reads again (HTTP/2's fairness quantum
# has nobody to be fair to here, but reads and timers must still run), and per call on the
# copy path (what one read puts in memory: TLS, chunked). Zero-copy has no such bound: a
# file range is one sendfile, which the socket stops when it is full.
TURN = 1 << 20
COPY_RUN = 256 * 1024
ZERO_COPY_RUN = 1 << 62
# Request body bytes received and not yet consumed (by a handler or a queued request) beyond
# which reading pauses.
BODY_WINDOW = 65536

_REASONS = {s.value: s.phrase.encode() for s in http.HTTPStatus}
_STATUS_LINES = {
    (version, code): b"HTTP/%s %d %s\r\n" % (version, code, reason)
    for version in (b"1.1", b"1.0")
    for code, reason in _REASONS.items()
}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# Control bytes llhttp lets through in a target or a field value (it refuses CR, LF and NUL
# in most places, not all): none may reach a handler or a log.
_CONTROL = bytes(range(0x20)).replace(b"\t", b"") + b"\x7f"
_STRIP_CONTROL = bytes.maketrans(b"", b"")


class Http1Sink(FrameSink, Protocol):
    """The writer as the connection needs it: a FrameSink that unwraps DATA frames."""

    def start_body(self, chunked: bool) -> None:
        """The frames that follow are a response body: raw bytes, or chunks if ``chunked``."""

    def write_raw(self, data: bytes) -> None:
        """Bytes that are not a body frame (a response head, the last chunk)."""

    def flush(self) -> None: ...


class Http1Error(Exception):
    """A request this connection answers with ``status`` and then closes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Http1Exchange:
    """One request/response on an HTTP/1.x connection: the HTTP/1.1 side of
    :class:`~h2stream.core.exchange.Exchange` and of its record."""

    __slots__ = (
        "_buffered",
        "_conn",
        "_unconsumed",
        "body_done",
        "bytes_sent",
        "close_after",
        "expect_continue",
        "finished",
        "first_byte_at",
        "headers",
        "http_version",
        "log_note",
        "method",
        "mode",
        "path",
        "request_body",
        "request_id",
        "reset_by_peer",
        "reset_code",
        "started",
        "status",
        "stream_id",
        "task",
        "trailers_wanted",
    )

    def __init__(
        self,
        conn: Http1Connection,
        number: int,
        version: str,
        method: bytes,
        path: bytes,
        headers: Headers,
    ) -> None:
        self._conn = conn
        self.stream_id = number
        self.http_version = version
        self.method = method
        self.path = path
        self.headers = headers
        self.request_id = ""
        # What the handler adds to its access log line (gRPC's status).
        self.log_note = ""
        self.task: Cancellable | None = None
        self.status = 0
        self.bytes_sent = 0
        self.mode = ""
        self.reset_code: int | None = None
        self.reset_by_peer = False
        self.started = time.monotonic()
        self.first_byte_at = 0.0
        self.request_body: RequestBodySink | None = None
        # Body bytes that arrived before a reader (or before this request's turn).
        self._buffered: list[bytes] = []
        self._unconsumed = 0
        # The whole request body has been parsed (message complete).
        self.body_done = False
        # Our side is complete (response sent, or reset).
        self.finished = False
        self.close_after = False
        self.expect_continue = False  # Expect: 100-continue, not answered yet
        self.trailers_wanted = False

    # -- the exchange: the request -----------------------------------------------------

    @property
    def request_ended(self) -> bool:
        return self.body_done and not self._buffered

    @property
    def open(self) -> bool:
        return not self.finished and not self._conn.closed

    @property
    def peer(self) -> str:
        return self._conn.peer

    @property
    def addresses(self) -> Addresses:
        return self._conn.addresses

    @property
    def tls(self) -> bool:
        return self._conn.tls

    def read_body(self, sink: RequestBodySink) -> None:
        if not self.open:
            sink.end(ConnectionResetError("connection closed"))
            return
        self.request_body = sink
        if self.expect_continue and not self.body_done and not self.status:
            # The client waits for this before sending the body (RFC 9110 section 10.1.1).
            self.expect_continue = False
            self._conn.sink.write_raw(_CONTINUE)
            self._conn.wake()
        buffered, self._buffered = self._buffered, []
        for chunk in buffered:
            sink.feed(chunk, len(chunk))
        if self.body_done:
            sink.end()

    def feed(self, data: bytes) -> None:
        """Body bytes from the parser."""
        STATS.request_body_bytes += len(data)
        reader = self.request_body
        if self.finished:
            return  # answered already: the rest of the body is drained
        self._unconsumed += len(data)
        self._conn.unconsumed += len(data)
        if reader is not None:
            reader.feed(data, len(data))
        else:
            self._buffered.append(data)

    def end_body(self) -> None:
        self.body_done = True
        if self.request_body is not None and not self.finished:
            self.request_body.end()

    def consumed(self, length: int) -> None:
        length = min(length, self._unconsumed)
        self._unconsumed -= length
        self._conn.body_consumed(length)

    # -- the exchange: the answer ------------------------------------------------------

    def respond(self, status: int, headers: Headers, body: Body | None) -> None:
        self._conn.respond(self, status, headers, body)

    def respond_bytes(
        self,
        status: int,
        body: bytes,
        content_type: bytes = TEXT_PLAIN,
        extra: Headers | None = None,
        head: bool = False,
    ) -> None:
        headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
        if extra:
            headers.extend(extra)
        self._conn.respond(self, status, headers, None if head or not body else BytesBody(body))

    def answer_and_stop(self, status: int, message: bytes, extra: Headers | None = None) -> None:
        # A body still arriving is refused: HTTP/1.1 can only close after the response.
        if not self.body_done:
            self.close_after = True
        self.respond_bytes(status, message, extra=extra)

    def reset(self, code: ResetCode) -> None:
        self._conn.reset(self, code)

    def body_ready(self) -> None:
        self._conn.wake()

    def wake(self) -> None:
        self._conn.wake()

    def drop_body(self) -> int:
        """Forget body bytes nobody will read; returns how many were held."""
        held = self._unconsumed
        self._unconsumed = 0
        self._buffered = []
        return held


def _version_bytes(version: str) -> bytes:
    return b"1.0" if version == "1.0" else b"1.1"


def _body_framing(request: h2c.Http1Request) -> bytes:
    """The field that frames a request's body (llhttp checked it already), or b"" for none."""
    if request.get(b"transfer-encoding") is not None:
        return b"transfer-encoding: chunked\r\n"
    length = request.get(b"content-length")
    if length is not None and length.strip() not in (b"", b"0"):
        return b"content-length: " + length.strip() + b"\r\n"
    return b""


class _AfterIgnoredUpgrade:
    """The parser's callbacks once an Upgrade request was served as HTTP/1.x: the stand-in
    head that frames its body (see Http1Connection._upgrade) is skipped; its body, and every
    request after it on the connection, go to the connection as usual."""

    def __init__(self, connection: Http1Connection) -> None:
        self._connection = connection
        self._stand_in = True

    def on_message_begin(self) -> None:
        if not self._stand_in:
            self._connection.on_message_begin()

    def on_url(self, url: bytes) -> None:
        if not self._stand_in:
            self._connection.on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._stand_in:
            self._connection.on_header(name, value)

    def on_headers_complete(self) -> None:
        if not self._stand_in:
            self._connection.on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._connection.on_body(body)

    def on_message_complete(self) -> None:
        self._connection.on_message_complete()
        self._stand_in = False


class Http1Connection:
    """One HTTP/1.x connection: the parser, the request queue and the response in progress."""

    def __init__(
        self,
        config: Config,
        sink: Http1Sink,
        handler: Handler,
        on_close: Callable[[], None],
        wake: Callable[[], None],
        set_reading: Callable[[bool], None],
        on_stream_end: ExchangeObserver | None = None,
        on_upgrade: Callable[[bytes, bytes, Headers, bytes], None] | None = None,
    ) -> None:
        self.config = config
        self.sink = sink
        self._handler = handler
        self._on_close = on_close
        self.wake = wake
        self._set_reading = set_reading
        self._on_stream_end = on_stream_end
        # h2c: called with (settings, method, HTTP/2 headers, the bytes after the request)
        # when the first request asks to upgrade and may (cleartext, no body).
        self._on_upgrade = on_upgrade
        self._parser = httptools.HttpRequestParser(self)
        self._request_id = requestid.resolver(config)
        self.peer = "-"
        self.addresses = NO_ADDRESSES
        self.tls = False
        self.closed = False
        # Set by a graceful drain: the exchange in progress is the last.
        self.draining = False
        # The exchange being answered, and those parsed after it (pipelining), in order.
        self.current: Http1Exchange | None = None
        self._queue: collections.deque[Http1Exchange] = collections.deque()
        self._body: Body | None = None
        self._chunked = False
        self.requests = 0
        # Body bytes received and not consumed, over all exchanges (reading pauses past
        # BODY_WINDOW).
        self.unconsumed = 0
        self._reading = True
        # The request being parsed.
        self._parsing: Http1Exchange | None = None
        self._url: list[bytes] = []
        self._fields: Headers = []
        self._head_size = 0
        self._in_head = False
        # Marks for the timeouts (the I/O layer's sweeper reads them): when the head being
        # parsed began, bytes received so far.
        self.head_since = 0.0
        self.received = 0
        # Bytes received before the current read, and before the head being parsed.
        self._fed_before = 0
        self._head_mark = 0
        # Bytes read past the pipelining depth, parsed as the queue drains.
        self._held = b""
        self._advancing = False
        max_head = config.http1_max_head_size
        self._max_head = max_head
        self._max_fields = config.http1_max_headers
        self._depth = config.http1_pipeline_depth
        cap = config.max_requests_per_connection
        self._cap = cap if cap else 1 << 62

    # -- what the timeouts read --------------------------------------------------------

    @property
    def idle(self) -> bool:
        """No request in progress or queued, no head begun: a keep-alive wait."""
        return self.current is None and not self._queue and not self._in_head

    @property
    def head_pending(self) -> bool:
        return self._in_head

    @property
    def body_pending(self) -> bool:
        """A request body is still arriving (a slow upload stalls here)."""
        parsing = self._parsing
        return parsing is not None and not parsing.body_done and not self._in_head

    # -- input -------------------------------------------------------------------------

    def receive(self, data: bytes) -> bool:
        """Feed bytes from the peer; returns True when another :meth:`pump` turn is due."""
        if self.closed:
            return False
        self._fed_before = self.received
        self.received += len(data)
        try:
            self._take(data)
            self._advance()
            if self._in_head and self.received - self._head_mark > self._max_head:
                # llhttp reports a field only once it is complete: a head that keeps growing
                # is measured here (at most a read's size late).
                limit_event("http1_head_size")
                raise Http1Error(431, "request head too large")
        except Http1Error as exc:
            self._fail(exc.status, str(exc))
            return False
        self._check_reading()
        return self.pump()

    def _take(self, data: bytes) -> None:
        """Parse ``data`` a request head at a time while fewer than the pipelining depth wait;
        hold the rest unparsed (reading pauses meanwhile). llhttp parses all it is given, so
        the depth is kept by what it is given; a read holding one request is one feed."""
        queue = self._queue
        depth = self._depth
        end = len(data)
        pos = 0
        while pos < end:
            if len(queue) >= depth or self.closed:
                self._held = data[pos:]
                return
            cut = data.find(b"\r\n\r\n", pos)
            stop = end if cut < 0 else cut + 4
            self._feed(data if not pos and stop == end else data[pos:stop])
            pos = stop
        self._held = b""

    def _feed(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._upgrade(data, int(upgrade.args[0]))
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, Http1Error):
                raise exc.__context__ from None
            raise self._parse_error(exc) from None

    def _parse_error(self, exc: Exception) -> Http1Error:
        text = str(exc)
        if self._in_head and self._head_size > self._max_head:
            return Http1Error(431, "request head too large")
        if "Transfer-Encoding" in text and "Content-Length" not in text:
            return Http1Error(501, "unsupported transfer-encoding")
        return Http1Error(400, f"malformed request: {text}")

    # httptools callbacks. An exception here stops the parser (it raises HttpParserError
    # with ours as its context), so limits are checked as the bytes arrive.

    def on_message_begin(self) -> None:
        self._in_head = True
        self._head_size = 0
        self._head_mark = self._fed_before
        self._url = []
        self._fields = []
        self.head_since = time.monotonic()

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        if self._head_size > self._max_head:
            limit_event("http1_request_line")
            raise Http1Error(414, "request target too long")
        self._url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self._max_head:
            limit_event("http1_head_size")
            raise Http1Error(431, "request head too large")
        if len(self._fields) >= self._max_fields:
            limit_event("http1_header_count")
            raise Http1Error(431, "too many header fields")
        self._fields.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        exchange = self._build()
        self._parsing = exchange
        self._queue.append(exchange)

    def on_body(self, body: bytes) -> None:
        parsing = self._parsing
        if parsing is not None:
            parsing.feed(body)

    def on_message_complete(self) -> None:
        parsing = self._parsing
        if parsing is not None:
            parsing.end_body()

    def _build(self) -> Http1Exchange:
        parser = self._parser
        version = parser.get_http_version()
        method = parser.get_method()
        target = b"".join(self._url)
        fields = self._fields
        if _has_control(target):
            raise Http1Error(400, "control character in the request target")
        host: bytes | None = None
        lengths: set[bytes] = set()
        for name, value in fields:
            if _has_control(value):
                raise Http1Error(400, "control character in a header value")
            if name == b"host":
                if host is not None:
                    raise Http1Error(400, "more than one host field")
                host = value
            elif name == b"content-length":
                lengths.add(value.strip())
            elif name == b"transfer-encoding" and value.strip().lower() != b"chunked":
                # Only chunked is understood; anything else cannot be framed (RFC 9112 6.1).
                raise Http1Error(501, "unsupported transfer-encoding")
        if len(lengths) > 1:
            raise Http1Error(400, "differing content-length fields")
        if not target.startswith(b"/"):
            if target == b"*" and method == b"OPTIONS":
                pass
            elif target.startswith((b"http://", b"https://")):
                # Absolute form (RFC 9112 section 3.2.2): its authority replaces Host.
                try:
                    url = httptools.parse_url(target)
                except httptools.HttpParserInvalidURLError:
                    raise Http1Error(400, "malformed request target") from None
                host = url.host + (b":%d" % url.port if url.port else b"")
                target = (url.path or b"/") + (b"?" + url.query if url.query else b"")
            else:
                raise Http1Error(400, "malformed request target")
        if host is None:
            if version != "1.0":
                raise Http1Error(400, "missing host field")
            host = b""
        self.requests += 1
        headers: Headers = [
            (b":method", method),
            (b":scheme", b"https" if self.tls else b"http"),
            (b":authority", host),
            (b":path", target),
        ]
        headers.extend(fields)
        exchange = Http1Exchange(self, self.requests, version, method, target, headers)
        exchange.request_id = self._request_id(headers)
        keep_alive = parser.should_keep_alive()
        if not keep_alive or self.requests >= self._cap:
            if keep_alive:
                limit_event("requests_per_connection")
            exchange.close_after = True
        for name, value in fields:
            if name == b"expect" and value.lower() == b"100-continue" and version != "1.0":
                exchange.expect_continue = True
            elif name == b"te" and b"trailers" in value.lower():
                exchange.trailers_wanted = True
        return exchange

    def _upgrade(self, data: bytes, offset: int) -> None:
        """llhttp stopped at an Upgrade request: take h2c if we may, else serve it here."""
        exchange = self._parsing
        self._parser = httptools.HttpRequestParser(self)
        rest = data[offset:]
        if exchange is None:
            raise Http1Error(400, "malformed upgrade request")
        request = h2c.Http1Request(
            exchange.method,
            exchange.path,
            b"HTTP/" + _version_bytes(exchange.http_version),
            exchange.headers[4:],
        )
        settings = h2c.upgrade_settings(request)
        if (
            settings is not None
            and self._on_upgrade is not None
            and exchange.stream_id == 1
            and self.current is None
            and len(self._queue) == 1
        ):
            problem = h2c.settings_problem(settings)
            if problem is not None:
                # Before the 101, while a status can still say why (after it, h2 would end
                # the connection without a word).
                raise Http1Error(400, f"malformed HTTP2-Settings header: {problem}")
            self._queue.clear()
            self._parsing = None
            self.closed = True  # this connection is HTTP/2 from now on
            self._on_upgrade(settings, exchange.method, h2c.upgraded_headers(request), rest)
            return
        # Not upgraded: an ordinary HTTP/1.x request (RFC 9113 section 3.2 lets a server
        # ignore the Upgrade; an HTTP/1.0 one must be ignored), and keep-alive goes on.
        # llhttp stopped at the end of the head and left any body unparsed; a fresh parser
        # reads it behind a stand-in head that carries only its framing.
        framing = _body_framing(request)
        if framing:
            exchange.body_done = False  # llhttp called it complete at the head
            self._parser = httptools.HttpRequestParser(_AfterIgnoredUpgrade(self))
            self._parser.feed_data(b"POST / HTTP/1.1\r\n" + framing + b"\r\n")
        else:
            exchange.end_body()
        if rest:
            self._feed(rest)

    # -- the queue ---------------------------------------------------------------------

    def _advance(self) -> None:
        """Dispatch the next request once the previous one is answered, parsing held bytes
        as the queue drains. A loop, never a recursion: a handler that answers at once
        finishes its exchange inside this call, and the loop takes the next."""
        if self._advancing:
            return
        self._advancing = True
        queue = self._queue
        try:
            while self.current is None and not self.closed:
                if not queue:
                    if not self._held:
                        break
                    held, self._held = self._held, b""
                    self._take(held)
                    continue
                exchange = queue.popleft()
                self.current = exchange
                STATS.streams_active += 1
                STATS.streams_total += 1
                self._handler(exchange)
            if self._held and len(queue) < self._depth and not self.closed:
                held, self._held = self._held, b""
                self._take(held)
        finally:
            self._advancing = False

    def _check_reading(self) -> None:
        want = len(self._queue) < self._depth and not self._held and self.unconsumed < BODY_WINDOW
        if want != self._reading and not self.closed:
            self._reading = want
            self._set_reading(want)

    def body_consumed(self, length: int) -> None:
        self.unconsumed -= length
        if not self._reading:
            self._check_reading()

    # -- responses ---------------------------------------------------------------------

    def respond(
        self, exchange: Http1Exchange, status: int, headers: Headers, body: Body | None
    ) -> None:
        if exchange is not self.current or exchange.status or self.closed:
            if body is not None:
                body.close()
            return
        exchange.status = status
        if exchange.expect_continue:  # the body was never asked for
            exchange.close_after = exchange.close_after or not exchange.body_done
        if self.draining:
            exchange.close_after = True
        version = _version_bytes(exchange.http_version)
        if version == b"1.0" and status < 200:
            status = 200  # an HTTP/1.0 client knows no 1xx
        head = [_STATUS_LINES.get((version, status)) or b"HTTP/%s %d \r\n" % (version, status)]
        length_given = False
        for name, value in headers:
            if name == b"content-length":
                length_given = True
            head.append(name + b": " + value + b"\r\n")
        no_body = status in (204, 304) or status < 200 or exchange.method == b"HEAD"
        if body is not None and (no_body or body.done):
            body.close()
            body = None
        chunked = False
        if body is None:
            if not length_given and not no_body:
                head.append(b"content-length: 0\r\n")
        elif not length_given:
            if version == b"1.1":
                chunked = True
                head.append(b"transfer-encoding: chunked\r\n")
            else:
                exchange.close_after = True  # the end of the body is the end of the connection
        head.append(b"date: " + DATES.get() + b"\r\nserver: " + SERVER_NAME + b"\r\n")
        if exchange.request_id:
            head.append(requestid.HEADER + b": " + exchange.request_id.encode() + b"\r\n")
        if exchange.close_after:
            head.append(b"connection: close\r\n\r\n")
        elif version == b"1.0":
            head.append(b"connection: keep-alive\r\n\r\n")
        else:
            head.append(b"\r\n")
        sink = self.sink
        sink.write_raw(b"".join(head))
        if body is None:
            self._finish(exchange)
            return
        self._body = body
        self._chunked = chunked
        sink.start_body(chunked)
        if body.wakes_itself:
            body.set_waker(self.wake)

    def pump(self) -> bool:
        """Write the current body while the sink takes it; True when a turn ran out. A body
        that ends lets the next pipelined request be dispatched and its body written."""
        sink = self.sink
        budget = ZERO_COPY_RUN if sink.use_sendfile else TURN
        while True:
            body = self._body
            if body is None or self.closed:
                return False
            exchange = self.current
            assert exchange is not None
            number = exchange.stream_id
            sent = 0
            if sink.use_sendfile:
                run = budget
            else:
                budget = min(budget, TURN)
                run = COPY_RUN
            while sink.writable and body.ready:
                sent = body.emit(sink, number, min(run, budget), MAX_FRAME)
                if sent:
                    if not exchange.bytes_sent:
                        exchange.first_byte_at = time.monotonic()
                    exchange.bytes_sent += sent
                    budget -= sent
                if body.failed or body.done or budget <= 0 or not sent:
                    break
            if body.failed:
                log.warning("request %d: body source failed, closing", number)
                exchange.reset_code = int(ResetCode.INTERNAL_ERROR)
                self._abandon(exchange)
                return False
            if not body.done:
                return budget <= 0
            self._end_body(exchange, body)
            if budget <= 0:
                return self._body is not None

    def _end_body(self, exchange: Http1Exchange, body: Body) -> None:
        if self._chunked:
            trailers = body.trailers
            if trailers and exchange.trailers_wanted:
                fields = b"".join(n + b": " + v + b"\r\n" for n, v in trailers)
                self.sink.write_raw(b"0\r\n" + fields + b"\r\n")
            else:
                self.sink.write_raw(b"0\r\n\r\n")
        self._finish(exchange)

    def _finish(self, exchange: Http1Exchange) -> None:
        """Our side of ``exchange`` is complete: on to the next request, or close."""
        self._forget(exchange)
        if exchange.close_after or self.draining:
            self._close()
            return
        try:
            self._advance()
        except Http1Error as exc:  # in bytes held back by the pipelining depth
            self._fail(exc.status, str(exc))
            return
        self._check_reading()

    def _forget(self, exchange: Http1Exchange) -> None:
        if exchange.finished:
            return
        exchange.finished = True
        body = self._body
        if body is not None and exchange is self.current:
            exchange.mode = body.mode
            body.close()
            self._body = None
        if exchange is self.current:
            self.current = None
            STATS.streams_active -= 1
        self.unconsumed -= exchange.drop_body()
        reader = exchange.request_body
        if reader is not None and not exchange.body_done:
            reader.end(ConnectionResetError("exchange ended"))
        if not exchange.body_done:
            exchange.close_after = True  # the rest of its body is not worth reading
        task = exchange.task
        if task is not None and not task.done() and exchange.reset_code is not None:
            task.cancel()
        if self._on_stream_end is not None:
            self._on_stream_end(exchange)

    def reset(self, exchange: Http1Exchange, code: ResetCode) -> None:
        """HTTP/1.1 has no stream to reset: the connection closes (a body in progress is
        cut, so the client cannot take it as complete)."""
        if exchange.finished:
            return
        if exchange.reset_code is None:
            exchange.reset_code = int(code)
        STATS.rst_sent += 1
        self._abandon(exchange)

    def _abandon(self, exchange: Http1Exchange) -> None:
        self._forget(exchange)
        self._close()

    def _fail(self, status: int, message: str) -> None:
        """A request we cannot read: answer ``status`` if nothing is being answered, close."""
        log.debug("HTTP/1.1 request refused with %d: %s", status, message)
        if status == 400:
            limit_event("http1_bad_request")
        exchange = self.current
        if exchange is None or not exchange.status:
            version = b"1.1"
            body = message.encode() + b"\n"
            self.sink.write_raw(
                (_STATUS_LINES.get((version, status)) or b"HTTP/1.1 400 Bad Request\r\n")
                + b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
                % len(body)
                + b"date: " + DATES.get() + b"\r\nserver: " + SERVER_NAME
                + b"\r\nconnection: close\r\n\r\n" + body
            )  # fmt: skip
        if exchange is not None:
            exchange.close_after = True
            if exchange.status:
                # A response in progress finishes; nothing is read or answered after it.
                self._queue.clear()
                self._set_reading(False)
                self._reading = False
                return
            exchange.reset_code = int(ResetCode.PROTOCOL_ERROR)
            self._forget(exchange)
        self._close()

    # -- lifecycle ---------------------------------------------------------------------

    def timed_out(self, status: int, kind: str) -> None:
        """A timeout of the I/O layer's sweeper: answer ``status`` if nothing is being
        answered (0: just close), then close."""
        limit_event(kind)
        exchange = self.current
        if status and (exchange is None or not exchange.status):
            self._fail(status, kind.replace("_", " "))
            return
        if exchange is not None:
            exchange.reset_code = int(ResetCode.CANCEL)
            self._forget(exchange)
        self._close()

    def shutdown(self) -> None:
        """Graceful drain: an idle connection closes now; a response in progress finishes
        (``connection: close`` if its head has not gone yet) and is the last."""
        self.draining = True
        self._queue.clear()
        if self.current is None:
            self._close()

    def _close(self) -> None:
        self.sink.flush()
        if not self.closed:
            self.closed = True
            self._on_close()

    def connection_lost(self) -> None:
        self.closed = True
        self._queue.clear()
        exchange = self.current
        if exchange is not None:
            if exchange.reset_code is None:
                exchange.reset_code = int(ResetCode.CANCEL)
            self._forget(exchange)


def _has_control(value: bytes) -> bool:
    """Whether ``value`` holds a control byte (HT allowed)."""
    return value != value.translate(_STRIP_CONTROL, _CONTROL)
