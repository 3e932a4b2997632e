"""The exchange interface: one request and the ways to answer it, whatever the protocol.

Handlers (static files, the built-in endpoints, the app API, and later ASGI and gRPC) see an
:class:`Exchange` and nothing else: no session, no stream state machine, no h2. The HTTP/2
session implements it per stream; an HTTP/1.1 connection implements it per request. So the same
handler serves both, and a protocol's rules (window credit, END_STREAM, RST_STREAM, chunked
coding, ``Connection: close``) stay inside the protocol.

The answer is headers plus a body source (:class:`~h2stream.core.framing.Body`: bytes, a file
range, a producer of chunks) that the connection moves as the peer's flow control allows, with
trailers if the body has them, or a reset that abandons the exchange.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import NamedTuple, Protocol

from h2stream.core.framing import Body

Headers = list[tuple[bytes, bytes]]

TEXT_PLAIN = b"text/plain; charset=utf-8"


class ResetCode(enum.IntEnum):
    """Why an exchange is abandoned. HTTP/2 sends the code in RST_STREAM (RFC 9113 section 7,
    same numbers and names); HTTP/1.1 can only close the connection. Handlers use a few of
    them; logs name any a peer sent."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


class Addresses(NamedTuple):
    """Both ends of a connection as ASGI's scope names them. ``client``: (host, port), None
    when unknown (a Unix socket). ``server``: (host, port), (path, None) on a Unix socket, or
    None. Behind a PROXY header, the client and destination the header carries."""

    client: tuple[str, int] | None = None
    server: tuple[str, int | None] | None = None


NO_ADDRESSES = Addresses()


class RequestBodySink(Protocol):
    """Where a handler's request body reader takes the body as it arrives."""

    def feed(self, data: bytes, flow_controlled_length: int) -> None:
        """A chunk arrived; ``flow_controlled_length`` is what :meth:`Exchange.consumed` must
        give back once the handler has read it (HTTP/2 counts padding; HTTP/1.1 equals
        ``len(data)``)."""

    def end(self, error: BaseException | None = None) -> None:
        """The body is complete, or broken by ``error`` (reset, connection lost)."""


class Cancellable(Protocol):
    """The handler's task, as far as the connection needs it (an ``asyncio.Task``)."""

    def done(self) -> bool: ...

    def cancel(self, msg: str | None = None) -> bool: ...


class Exchange(Protocol):
    """One request/response exchange as a handler sees it."""

    # -- the request -----------------------------------------------------------------------
    # Method and raw target as sent (the path with its query, not percent-decoded).
    method: bytes
    path: bytes
    # Header fields as received, names lowercase; HTTP/2's pseudo-header fields come first.
    headers: Headers
    # The client's x-request-id (or traceparent id), ours when the access log wants one.
    request_id: str
    # The handler's task, if it runs one: cancelled when the exchange dies under it.
    task: Cancellable | None
    # The status sent (0 until the response headers went out).
    status: int
    # The stream id (HTTP/2) or the request's number on its connection (HTTP/1.1): for logs.
    stream_id: int
    # What the handler adds to its access log line ("" for most): gRPC's status, which
    # travels in trailers where the log cannot see it.
    log_note: str

    @property
    def http_version(self) -> str:
        """``"2"``, ``"1.1"`` or ``"1.0"``."""

    @property
    def tls(self) -> bool:
        """Whether the request came over TLS (ASGI's ``scheme``)."""

    @property
    def peer(self) -> str:
        """The client's address (``-`` when unknown), as the access log names it."""

    @property
    def addresses(self) -> Addresses:
        """The connection's client and server addresses, with ports (ASGI's scope)."""

    @property
    def request_ended(self) -> bool:
        """The whole request has arrived and been handed on: no body, or all of it delivered
        (to the reader, or drained). False while chunks that came in the same read as the
        headers are still on their way to a reader registered now."""

    @property
    def open(self) -> bool:
        """Still answerable: not finished, not reset, the connection not lost."""

    def read_body(self, sink: RequestBodySink) -> None:
        """Deliver the request body to ``sink`` from now on, then ``sink.end()``; if the
        request has already ended, ``sink.end()`` comes at once. Without a reader, a body is
        drained and its credit given back at once."""

    def consumed(self, length: int) -> None:
        """The handler read ``length`` flow-controlled bytes: the client may send more."""

    # -- the answer ------------------------------------------------------------------------

    def respond(self, status: int, headers: Headers, body: Body | None) -> None:
        """Send the response headers (``date``, ``server`` and the request id are added);
        a body that is not done is then sent as flow control allows."""

    def respond_bytes(
        self,
        status: int,
        body: bytes,
        content_type: bytes = TEXT_PLAIN,
        extra: Headers | None = None,
        head: bool = False,
    ) -> None:
        """A whole response from memory, with ``content-length`` (``head``: headers only)."""

    def answer_and_stop(self, status: int, message: bytes, extra: Headers | None = None) -> None:
        """A complete response; a request body still arriving is refused (HTTP/2: after the
        response, RST_STREAM(NO_ERROR); HTTP/1.1: the connection closes after it)."""

    def reset(self, code: ResetCode) -> None:
        """Abandon the exchange (a body already started is cut, never ended as complete)."""

    def body_ready(self) -> None:
        """The response body has more to send (a producer handed over a chunk)."""

    def wake(self) -> None:
        """Output appeared outside a read (a handler task answered): ask for a turn."""


Handler = Callable[[Exchange], None]
"""Called once per request, as its headers arrive, with the exchange alone."""


class ExchangeRecord(Protocol):
    """What observers (access log, metrics) read of an exchange once it has ended."""

    method: bytes
    path: bytes
    headers: Headers
    request_id: str
    status: int
    # Response body bytes actually framed, how they left ("sendfile", "copy", "zstd", ...).
    bytes_sent: int
    mode: str
    # Set when the exchange was reset (by either side) or cut by a lost connection.
    reset_code: int | None
    reset_by_peer: bool
    # time.monotonic() at the request and at the first body byte (0.0: none sent).
    started: float
    first_byte_at: float
    # The stream id (HTTP/2) or the request's number on its connection (HTTP/1.1).
    stream_id: int
    # Exchange.log_note as the handler left it.
    log_note: str

    @property
    def http_version(self) -> str: ...

    @property
    def peer(self) -> str:
        """The client's address as ``host:port`` (``-`` when unknown)."""

    @property
    def tls(self) -> bool: ...


ExchangeObserver = Callable[[ExchangeRecord], None]
"""Called once per exchange as it ends (completed, reset or cut), with the exchange alone."""
