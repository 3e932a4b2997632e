"""One HTTP/1.x request and its answer: the HTTP/1.1 side of the exchange interface.

The connection makes one :class:`Http1Exchange` per request and hands it to the handler; the
exchange keeps the request's own state (its body as it arrives, what was sent) and passes
every answer to its connection, which alone writes.
"""

from __future__ import annotations

from typing import Protocol

from h2stream.core.exchange import (
    TEXT_PLAIN,
    Addresses,
    Cancellable,
    Headers,
    RequestBodySink,
    ResetCode,
)
from h2stream.core.framing import Body
from h2stream.core.stats import STATS

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class ExchangeOwner(Protocol):
    """What an exchange asks of its connection."""

    closed: bool
    peer: str
    addresses: Addresses
    tls: bool
    # Body bytes received and not consumed, over all its exchanges.
    unconsumed: int

    def respond(
        self, exchange: Http1Exchange, status: int, headers: Headers, body: Body | None
    ) -> None: ...

    def respond_payload(
        self, exchange: Http1Exchange, status: int, headers: Headers, payload: bytes
    ) -> None: ...

    def reset(self, exchange: Http1Exchange, code: ResetCode) -> None: ...

    def send_continue(self) -> None: ...

    def body_consumed(self, length: int) -> None: ...

    def wake(self) -> None: ...


class Http1Exchange:
    """One request/response on an HTTP/1.x connection: the HTTP/1.1 side of
    :class:`~h2stream.core.exchange.Exchange` and of its record."""

    # Slots, and the rarely changed ones set only when they change: one is made per request.
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
        conn: ExchangeOwner,
        number: int,
        version: str,
        method: bytes,
        path: bytes,
        headers: Headers,
        started: float,
    ) -> None:
        self._conn = conn
        self.stream_id = number
        self.http_version = version
        self.method = method
        self.path = path
        self.headers = headers
        self.started = started
        self.request_id = ""
        # What the handler adds to its access log line (gRPC's status).
        self.log_note = ""
        self.task: Cancellable | None = None
        self.status = 0
        self.bytes_sent = 0
        self.mode = ""
        self.reset_code: int | None = None
        self.reset_by_peer = False
        self.first_byte_at = 0.0
        self.request_body: RequestBodySink | None = None
        # Body bytes that arrived before a reader (or before this request's turn); None
        # until there are some.
        self._buffered: list[bytes] | None = None
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
            self._conn.send_continue()
        buffered, self._buffered = self._buffered, None
        for chunk in buffered or ():
            sink.feed(chunk, len(chunk))
        if self.body_done:
            sink.end()

    def feed(self, data: bytes) -> None:
        """Body bytes from the parser."""
        STATS.request_body_bytes += len(data)
        if self.finished:
            return  # answered already: the rest of the body is drained
        self._unconsumed += len(data)
        self._conn.unconsumed += len(data)
        reader = self.request_body
        if reader is not None:
            reader.feed(data, len(data))
        elif self._buffered is None:
            self._buffered = [data]
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
        self._conn.respond_payload(self, status, headers, b"" if head else body)

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

    # -- for the connection ------------------------------------------------------------

    def drop_body(self) -> int:
        """Forget body bytes nobody will read; returns how many were held."""
        held = self._unconsumed
        if held or self._buffered is not None:
            self._unconsumed = 0
            self._buffered = None
        return held
