"""One HTTP/1.1 (or 1.0) connection's state, with no I/O.

Bytes go in through :meth:`Http1Connection.receive`, parsed by llhttp (``httptools``); each
request becomes an :class:`~h2stream.http1.exchange.Http1Exchange` handed to the same handler
HTTP/2 streams get. Output goes out through an :class:`Http1Sink`: the response head as raw
bytes, a body in memory in the same write, any other body as the HTTP/2 DATA frames every
:class:`~h2stream.core.framing.Body` already writes, which the sink unwraps into raw bytes
(``content-length``) or chunks (``transfer-encoding: chunked``).

Requests are answered one at a time, in order. Pipelined requests are parsed ahead (their body
bytes kept) up to ``http1_pipeline_depth``; past that, or while a handler leaves body bytes
unread, the connection asks the I/O layer to stop reading, so TCP's window is the flow control.

The per-request path is the server's hottest: a request answered from memory (a small file,
an error page) is parsed, handled, written and finished inside the one ``receive`` call, with
one write, no frame and no turn of the loop in between.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

import httptools

from h2stream.config import Config
from h2stream.core import requestid
from h2stream.core import sniff as h2c
from h2stream.core.exchange import NO_ADDRESSES, ExchangeObserver, Handler, Headers, ResetCode
from h2stream.core.framing import Body, BytesBody, FrameSink
from h2stream.core.limits import limit_event
from h2stream.core.stats import STATS
from h2stream.http1 import upgrade
from h2stream.http1.exchange import CONTINUE, Http1Exchange
from h2stream.http1.head import DATE_LINE, STATUS_LINES, status_and_fields
from h2stream.http1.request import (
    BODY_FRAMED,
    CLIENT_ID,
    CONTROL,
    EXPECT_CONTINUE,
    PATH_FIELD,
    TRAILERS,
    Http1Error,
    ParsedHead,
    request_fields,
)

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

# How a head ends: the connection's fate, then the blank line.
_CLOSE = b"connection: close\r\n\r\n"
_KEEP_ALIVE_1_0 = b"connection: keep-alive\r\n\r\n"
_END = b"\r\n"


class Http1Sink(FrameSink, Protocol):
    """The writer as the connection needs it: a FrameSink that unwraps DATA frames."""

    def start_body(self, chunked: bool) -> None:
        """The frames that follow are a response body: raw bytes, or chunks if ``chunked``."""

    def write_raw(self, data: bytes) -> None:
        """Bytes that are not a body frame (a response head, the last chunk)."""

    def flush(self) -> None: ...


class Http1Connection:
    """One HTTP/1.x connection: the parser, the request queue and the response in progress."""

    # Slots: a thousand idle keep-alive connections are a thousand of these (C-many); a
    # dict of this many attributes costs about 1.5 KiB more each.
    __slots__ = (
        "_advancing",
        "_body",
        "_candidate",
        "_cap",
        "_chunked",
        "_depth",
        "_fed_before",
        "_fields",
        "_handler",
        "_head_mark",
        "_head_size",
        "_held",
        "_ids_for_all",
        "_in_head",
        "_max_fields",
        "_max_head",
        "_on_close",
        "_on_stream_end",
        "_on_upgrade",
        "_parser",
        "_parsing",
        "_queue",
        "_reading",
        "_repeatable",
        "_request_id",
        "_scheme",
        "_set_reading",
        "_tls",
        "_url",
        "addresses",
        "closed",
        "config",
        "current",
        "draining",
        "head_since",
        "peer",
        "received",
        "requests",
        "sink",
        "unconsumed",
        "wake",
    )

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
        # Ids are made up for every request (the access log is on), not only echoed.
        self._ids_for_all = self._request_id is not requestid.incoming
        self.peer = "-"
        self.addresses = NO_ADDRESSES
        self._tls = False
        self._scheme = b"http"
        self.closed = False
        # Set by a graceful drain: the exchange in progress is the last.
        self.draining = False
        # The exchange being answered, and those parsed after it (pipelining), in order.
        self.current: Http1Exchange | None = None
        # A list, not a deque: the depth is small, and an empty deque is a 0.6 KiB block.
        self._queue: list[Http1Exchange] = []
        self._body: Body | None = None
        self._chunked = False
        self.requests = 0
        # Body bytes received and not consumed, over all exchanges (reading pauses past
        # BODY_WINDOW).
        self.unconsumed = 0
        self._reading = True
        # The request being parsed.
        self._parsing: Http1Exchange | None = None
        self._url = b""
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
        # The last bodiless keep-alive head parsed whole in one feed, and what it gave: a
        # client that repeats its request byte for byte (a poller, a health check, a load
        # generator) skips the parser and the checks, which would answer the same.
        self._repeatable: ParsedHead | None = None
        self._candidate: tuple[bytes, str, Headers, int, bool] | None = None
        self._advancing = False
        max_head = config.http1_max_head_size
        self._max_head = max_head
        self._max_fields = config.http1_max_headers
        self._depth = config.http1_pipeline_depth
        cap = config.max_requests_per_connection
        self._cap = cap if cap else 1 << 62

    @property
    def tls(self) -> bool:
        return self._tls

    @tls.setter
    def tls(self, value: bool) -> None:
        self._tls = value
        self._scheme = b"https" if value else b"http"

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
        return self._body is not None and self.pump()

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
            chunk = data if not pos and stop == end else data[pos:stop]
            repeatable = self._repeatable
            if repeatable is not None and chunk == repeatable.raw and self._between_messages():
                self._repeat(repeatable)
            else:
                self._feed(chunk)
            pos = stop
        self._held = b""

    def _between_messages(self) -> bool:
        """Whether the parser waits for a new request (no head or body in progress)."""
        parsing = self._parsing
        return not self._in_head and (parsing is None or parsing.body_done)

    def _repeat(self, head: ParsedHead) -> None:
        """The request ``head`` again: what feeding its bytes would do, without the parser."""
        self.head_since = time.monotonic()
        exchange = self._open_exchange(
            head.method, head.version, list(head.headers), head.notes, head.keep_alive
        )
        exchange.end_body()

    def _feed(self, data: bytes) -> None:
        # One head fed whole from a message boundary, bodiless and kept alive (the candidate
        # on_headers_complete leaves), may be repeated without the parser.
        whole = data.find(b"\r\n\r\n") == len(data) - 4 and self._between_messages()
        self._candidate = None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgrade(data, int(exc.args[0]))
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, Http1Error):
                raise exc.__context__ from None
            raise self._parse_error(exc) from None
        candidate = self._candidate
        if candidate is not None and whole and self._between_messages():
            self._repeatable = ParsedHead(bytes(data), *candidate)

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
        self._url = b""
        self._fields = []
        self.head_since = time.monotonic()

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        if self._head_size > self._max_head:
            limit_event("http1_request_line")
            raise Http1Error(414, "request target too long")
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self._max_head:
            limit_event("http1_head_size")
            raise Http1Error(431, "request head too large")
        fields = self._fields
        if len(fields) >= self._max_fields:
            limit_event("http1_header_count")
            raise Http1Error(431, "too many header fields")
        if value != value.translate(None, CONTROL):  # has_control, inlined: once per field
            raise Http1Error(400, "control character in a header value")
        fields.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        """A head is complete: its exchange joins the queue (checked, numbered, flagged)."""
        self._in_head = False
        parser = self._parser
        version = parser.get_http_version()
        method = parser.get_method()
        headers, notes = request_fields(method, version, self._url, self._fields, self._scheme)
        keep_alive = parser.should_keep_alive()
        if keep_alive and not notes & (BODY_FRAMED | EXPECT_CONTINUE):
            self._candidate = (method, version, list(headers), notes, keep_alive)
        self._open_exchange(method, version, headers, notes, keep_alive)

    def _open_exchange(
        self, method: bytes, version: str, headers: Headers, notes: int, keep_alive: bool
    ) -> Http1Exchange:
        """The exchange of a checked head, numbered, flagged and queued."""
        self.requests += 1
        exchange = Http1Exchange(
            self, self.requests, version, method, headers[PATH_FIELD][1], headers, self.head_since
        )
        if notes & CLIENT_ID or self._ids_for_all:
            exchange.request_id = self._request_id(headers)
        if notes & EXPECT_CONTINUE:
            exchange.expect_continue = True
        if notes & TRAILERS:
            exchange.trailers_wanted = True
        if self.requests >= self._cap:
            if keep_alive:
                limit_event("requests_per_connection")
            exchange.close_after = True
        elif not keep_alive:
            exchange.close_after = True
        self._parsing = exchange
        self._queue.append(exchange)
        return exchange

    def on_body(self, body: bytes) -> None:
        parsing = self._parsing
        if parsing is not None:
            parsing.feed(body)

    def on_message_complete(self) -> None:
        parsing = self._parsing
        if parsing is not None:
            parsing.end_body()

    def _upgrade(self, data: bytes, offset: int) -> None:
        """llhttp stopped at an Upgrade request: take h2c if we may, else serve it here."""
        exchange = self._parsing
        self._parser = httptools.HttpRequestParser(self)
        self._repeatable = self._candidate = None
        rest = data[offset:]
        if exchange is None:
            raise Http1Error(400, "malformed upgrade request")
        request = h2c.Http1Request(
            exchange.method,
            exchange.path,
            b"HTTP/1.0" if exchange.http_version == "1.0" else b"HTTP/1.1",
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
        framing = upgrade.body_framing(request)
        if framing:
            exchange.body_done = False  # llhttp called it complete at the head
            self._parser = httptools.HttpRequestParser(upgrade.AfterIgnoredUpgrade(self))
            self._parser.feed_data(upgrade.stand_in_head(framing))
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
                exchange = queue.pop(0)
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
        version, status = self._answering(exchange, status)
        if status in (204, 304) or status < 200 or exchange.method == b"HEAD":
            if body is not None:
                body.close()
            self._respond_whole(exchange, version, status, headers, None)
        elif body is None:
            self._respond_whole(exchange, version, status, headers, b"")
        elif type(body) is BytesBody and not body.done:
            # In memory: written behind the head in the same write, the exchange done at
            # once (no frames to cut, no turn to wait for).
            exchange.mode = body.mode
            self._respond_whole(exchange, version, status, headers, body.take_rest())
        elif body.done:
            body.close()
            self._respond_whole(exchange, version, status, headers, b"")
        else:
            self._respond_streamed(exchange, version, status, headers, body)

    def respond_payload(
        self, exchange: Http1Exchange, status: int, headers: Headers, payload: bytes
    ) -> None:
        """A whole response from memory (``payload`` may be empty)."""
        if exchange is not self.current or exchange.status or self.closed:
            return
        version, status = self._answering(exchange, status)
        if status in (204, 304) or status < 200 or exchange.method == b"HEAD":
            self._respond_whole(exchange, version, status, headers, None)
            return
        if payload:
            exchange.mode = "copy"
            STATS.body_bytes_copy += len(payload)
        self._respond_whole(exchange, version, status, headers, payload)

    def _respond_whole(
        self,
        exchange: Http1Exchange,
        version: bytes,
        status: int,
        headers: Headers,
        payload: bytes | memoryview | None,
    ) -> None:
        """Head and body in one write, and the exchange ends here. ``payload`` None: a
        response that has no body (HEAD, 204, 304), whatever its fields say."""
        head, length_given = status_and_fields(version, status, headers)
        parts: list[bytes | memoryview] = [head]
        if payload is not None and not length_given:
            parts.append(b"content-length: %d\r\n" % len(payload))
        self._end_head(exchange, version, parts)
        if payload:
            parts.append(payload)
            exchange.first_byte_at = time.monotonic()
            exchange.bytes_sent = len(payload)
        self.sink.write_raw(b"".join(parts))
        self._finish(exchange)

    def _respond_streamed(
        self, exchange: Http1Exchange, version: bytes, status: int, headers: Headers, body: Body
    ) -> None:
        """The head now, the body as the socket takes it (:meth:`pump`)."""
        head, length_given = status_and_fields(version, status, headers)
        parts: list[bytes | memoryview] = [head]
        chunked = False
        if not length_given:
            if version == b"1.1":
                chunked = True
                parts.append(b"transfer-encoding: chunked\r\n")
            else:
                exchange.close_after = True  # the end of the body is the end of the connection
        self._end_head(exchange, version, parts)
        sink = self.sink
        sink.write_raw(b"".join(parts))
        self._body = body
        self._chunked = chunked
        sink.start_body(chunked)
        if body.wakes_itself:
            body.set_waker(self.wake)

    def _answering(self, exchange: Http1Exchange, status: int) -> tuple[bytes, int]:
        """Record the status; the version and status line the head carries."""
        exchange.status = status
        if exchange.expect_continue and not exchange.body_done:
            exchange.close_after = True  # the body was never asked for
        if exchange.http_version == "1.0":
            return b"1.0", 200 if status < 200 else status  # an HTTP/1.0 client knows no 1xx
        return b"1.1", status

    def _end_head(
        self, exchange: Http1Exchange, version: bytes, parts: list[bytes | memoryview]
    ) -> None:
        parts.append(DATE_LINE.get())
        if exchange.request_id:
            parts.append(requestid.HEADER + b": " + exchange.request_id.encode() + b"\r\n")
        if exchange.close_after or self.draining:
            exchange.close_after = True
            parts.append(_CLOSE)
        else:
            parts.append(_KEEP_ALIVE_1_0 if version == b"1.0" else _END)

    def send_continue(self) -> None:
        self.sink.write_raw(CONTINUE)
        self.wake()

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
        if self._advancing:
            return  # inside _advance's loop, which takes the next request itself
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
        if exchange is self.current:
            body = self._body
            if body is not None:
                exchange.mode = body.mode
                body.close()
                self._body = None
            self.current = None
            STATS.streams_active -= 1
        held = exchange.drop_body()
        if held:
            self.unconsumed -= held
        if not exchange.body_done:
            reader = exchange.request_body
            if reader is not None:
                reader.end(ConnectionResetError("exchange ended"))
            exchange.close_after = True  # the rest of its body is not worth reading
        task = exchange.task
        if task is not None and exchange.reset_code is not None and not task.done():
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
            body = message.encode() + b"\n"
            self.sink.write_raw(
                (STATUS_LINES.get((b"1.1", status)) or b"HTTP/1.1 400 Bad Request\r\n")
                + b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n" % len(body)
                + DATE_LINE.get()
                + _CLOSE
                + body
            )
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
        # The parser and this object are a reference cycle (its callbacks are our methods),
        # freed only when the garbage collector next runs: input held past the pipelining
        # depth and the last head need not wait for it.
        self._held = b""
        self._repeatable = self._candidate = None
        exchange = self.current
        if exchange is not None:
            if exchange.reset_code is None:
                exchange.reset_code = int(ResetCode.CANCEL)
            self._forget(exchange)
