"""The protocol core: one HTTP/2 connection's state, with no I/O.

Bytes go in through :meth:`Session.receive`; ordered output goes out through a
:class:`~h2stream.core.framing.FrameSink` that the I/O layer implements. The session owns h2's
connection object, turns its events into stream actions through a dispatch table, and runs the
scheduler that hands DATA frames to the sink exactly as the peer's windows allow.

Flow control is the backpressure: a stream with no window is parked (not buffered) until a
WINDOW_UPDATE or a SETTINGS change gives it credit; a sink that cannot write stops the
scheduler until the I/O layer calls :meth:`Session.pump` again.

Each request is a :class:`StreamState`, the HTTP/2 implementation of
:class:`~h2stream.core.exchange.Exchange`: handlers and observers get it alone and use only
that interface. h2 itself is reached through the adapter (:mod:`h2stream.core.h2conn`) and h2's
public events; nothing here looks into h2's state.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame

from h2stream.config import Config
from h2stream.core import requestid
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
from h2stream.core.frames import headers_header
from h2stream.core.framing import Body, BytesBody, FrameSink
from h2stream.core.h2conn import (
    BODY_ENDED,
    REQUEST_ENDED,
    REQUEST_OPEN,
    ResponseHeaderEncoder,
    ServerConnection,
    StreamHandle,
    encode_fields,
)
from h2stream.core.limits import FloodError, WorkerBudget, limit_event, note_protocol_error
from h2stream.core.stats import STATS, count_code
from h2stream.core.validation import request_problem, trailers_problem

log = logging.getLogger("h2stream.session")

SERVER_NAME = b"h2stream"
# The opaque data of the PING that follows the first GOAWAY of a graceful close.
SHUTDOWN_PING = b"h2s-gone"

# A request body whose receive window is below this waits for our credit, not on the peer.
_CREDIT_WAIT = 1024
# The codes of RST_STREAM and GOAWAY: the exchange's names are HTTP/2's numbers.
_H2_CODES = {code: h2.errors.ErrorCodes(code.value) for code in ResetCode}


class StreamState:
    """One request/response exchange on the connection: the HTTP/2 side of
    :class:`~h2stream.core.exchange.Exchange` (and of its record, read by observers).

    Besides scheduling state it records what logs and metrics report when the stream ends:
    status, body bytes actually framed, how they left, and a reset code if any. h2 keeps the
    protocol state; ``h2_stream`` is h2's stream object, handed to the adapter's methods.
    """

    __slots__ = (
        "_session",
        "blocked",
        "blocked_since",
        "body",
        "body_mark",
        "body_received",
        "body_since",
        "bytes_sent",
        "first_byte_at",
        "h2_stream",
        "headers",
        "log_note",
        "method",
        "mode",
        "path",
        "queued",
        "request_body",
        "request_ended",
        "request_id",
        "reset_by_peer",
        "reset_code",
        "started",
        "status",
        "stream_id",
        "task",
    )

    http_version = "2"

    def __init__(
        self,
        session: Session,
        stream_id: int,
        h2_stream: StreamHandle,
        method: bytes,
        path: bytes,
        headers: Headers,
    ) -> None:
        self._session = session
        self.stream_id = stream_id
        self.h2_stream = h2_stream
        self.method = method
        self.path = path
        # The request's header list as h2 decoded it (kept by reference, not copied).
        self.headers = headers
        self.body: Body | None = None
        # In the ready queue right now (appended once, popped once).
        self.queued = False
        # Parked on a zero stream window: the next WINDOW_UPDATE or SETTINGS wakes it.
        self.blocked = False
        # When it was parked (time.monotonic()): the wait is counted when the window opens.
        self.blocked_since = 0.0
        # The whole request has been handed on (see Exchange.request_ended): set when its
        # END_STREAM event is dispatched, which may come after h2 has seen it.
        self.request_ended = False
        # Set by a handler that reads the request body (else DATA is drained).
        self.request_body: RequestBodySink | None = None
        # The handler's task serving this stream, cancelled if the stream dies.
        self.task: Cancellable | None = None
        self.request_id = ""
        self.log_note = ""
        self.status = 0
        self.bytes_sent = 0
        self.mode = ""
        self.reset_code: int | None = None
        self.reset_by_peer = False
        self.started = time.monotonic()
        self.first_byte_at = 0.0
        # Request body bytes received (flow-controlled), and the body-idle timeout's mark of
        # them with the time it was taken (see Session.stalled_bodies).
        self.body_received = 0
        self.body_mark = -1
        self.body_since = 0.0

    # -- the exchange: the request ---------------------------------------------------------

    @property
    def open(self) -> bool:
        return self._session.streams.get(self.stream_id) is self

    @property
    def peer(self) -> str:
        return self._session.peer

    @property
    def addresses(self) -> Addresses:
        return self._session.addresses

    @property
    def tls(self) -> bool:
        return self._session.tls

    def read_body(self, sink: RequestBodySink) -> None:
        if self.request_ended:
            sink.end()
        elif not self.open:
            sink.end(ConnectionResetError("stream reset"))  # as _forget tells a reader
        else:
            self.request_body = sink

    def consumed(self, length: int) -> None:
        self._session.return_credit(self.stream_id, length)

    # -- the exchange: the answer ----------------------------------------------------------

    def respond(self, status: int, headers: Headers, body: Body | None) -> None:
        self._session.respond(self, status, headers, body)

    def respond_bytes(
        self,
        status: int,
        body: bytes,
        content_type: bytes = TEXT_PLAIN,
        extra: Headers | None = None,
        head: bool = False,
    ) -> None:
        self._session.respond_bytes(self, status, body, content_type, extra, head)

    def answer_and_stop(self, status: int, message: bytes, extra: Headers | None = None) -> None:
        """A complete response; then, if the client is still uploading, RST_STREAM(NO_ERROR).

        RFC 9113 section 8.1: after a complete response the server may ask the client to stop
        sending with NO_ERROR. With an upload in flight the response is headers-only
        (END_STREAM on the HEADERS frame), so the reset cannot cut a body that is still
        queued. "Still uploading" is h2's view (END_STREAM seen, maybe in a read whose events
        are still being dispatched), not only what has been dispatched.
        """
        session = self._session
        if self.request_ended or session.conn.remote_closed(self.h2_stream):
            session.respond_bytes(self, status, message, extra=extra)
            return
        # The response ends the stream on our side; _finish then sends the RST_STREAM.
        session.respond(self, status, [(b"content-length", b"0"), *(extra or ())], None)

    def reset(self, code: ResetCode) -> None:
        self._session.reset(self.stream_id, code)

    def body_ready(self) -> None:
        session = self._session
        session.schedule(self)
        session.wake()

    def wake(self) -> None:
        self._session.wake()


class _DateCache:
    """The ``date`` header changes once a second; format it once a second, and HPACK-encode
    it with ``server`` (the fields every HTTP/2 response ends with) once a second too."""

    __slots__ = ("_block", "_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""
        self._block = b""

    def get(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._turn(now)
        return self._value

    def fields_block(self) -> bytes:
        """``date`` and ``server`` as an HPACK block (their encoding uses no table state)."""
        now = int(time.time())
        if now != self._second:
            self._turn(now)
        return self._block

    def _turn(self, now: int) -> None:
        self._second = now
        self._value = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)).encode()
        self._block = encode_fields(((b"date", self._value), (b"server", SERVER_NAME)))


DATES = _DateCache()


class Session:
    """One HTTP/2 connection: h2 state, our streams, and the DATA scheduler."""

    def __init__(
        self,
        config: Config,
        sink: FrameSink,
        handler: Handler,
        on_close: Callable[[], None],
        wake: Callable[[], None] | None = None,
        on_stream_end: ExchangeObserver | None = None,
        *,
        budget: WorkerBudget | None = None,
    ) -> None:
        self.config = config
        self.sink = sink
        # The worker's fd budget (its server's context); a session alone (tests) has no cap.
        self._budget = budget if budget is not None else WorkerBudget()
        self._handler = handler
        self._on_close = on_close
        # Asks the I/O layer for a pump() soon: used when output appears outside receive().
        self.wake = wake or (lambda: None)
        self._on_stream_end = on_stream_end
        # Our SETTINGS, flood budgets and header-block caps (limits.py), from the start.
        self.conn = ServerConnection.for_config(config)
        # Lifetime cap: the stream id at which GOAWAY rotates the connection (client ids are
        # odd, so stream N is request (N + 1) / 2); one compare per request.
        cap = config.max_requests_per_connection
        self._rotate_at = 2 * cap - 1 if cap else 1 << 32
        self._headers = ResponseHeaderEncoder(self.conn.encoder)
        self.streams: dict[int, StreamState] = {}
        # Streams with body bytes and stream window to send, served round-robin.
        # Created with the first body (an empty deque is 760 bytes an idle connection never uses).
        self._ready: collections.deque[StreamState] | None = None
        self._dispatch: dict[type, Callable[[Any], None]] = {
            h2.events.RequestReceived: self._on_request,
            h2.events.DataReceived: self._on_data,
            h2.events.StreamEnded: self._on_stream_ended,
            h2.events.TrailersReceived: self._on_trailers,
            h2.events.StreamReset: self._on_stream_reset,
            h2.events.WindowUpdated: self._on_window_updated,
            h2.events.RemoteSettingsChanged: self._on_settings_changed,
            h2.events.ConnectionTerminated: self._on_terminated,
            h2.events.PingAckReceived: self._on_ping_ack,
        }
        self.goaway_sent = False
        self.closed = False
        self._last_stream_id = 0
        # A copy of the last request header list found well-formed: a client repeats its
        # fields request after request (the same table entries, for HPACK-indexed ones), and
        # comparing with it costs less than the checks (a tenth of a small request's CPU).
        # None until one is: no list equals it (an empty list is malformed).
        self._valid_fields: Headers | None = None
        self.shutdown_announced = False  # announce_shutdown() sent GOAWAY(2^31-1) and its PING
        # With Upgrade: h2c, stream 1's DATA waits for the client's preface (see DESIGN.md:
        # curl drops the connection if too much arrives with the 101).
        self._hold_data = False
        # The run a stream with company may send per turn (see pump).
        self._shared_run = config.stream_turn_bytes
        # Request ids (see requestid.py for the policy); peer and transport for the access log,
        # set by the I/O layer.
        self._request_id = requestid.resolver(config)
        # The id _request_id gave _valid_fields, when it depends on the fields alone.
        self._valid_fields_id: str | None = None
        self.peer = "-"
        self.addresses = NO_ADDRESSES
        self.tls = False
        # Nothing received yet (a TLS connection after its handshake, an h2c 101): the
        # preface timeout applies until the first bytes arrive.
        self.awaiting_preface = True

    # -- what the I/O layer's timeouts read ------------------------------------------------

    @property
    def highest_stream_id(self) -> int:
        """The highest stream id the peer has opened (grows with every new request)."""
        return self.conn.highest_inbound_stream_id

    @property
    def connection_window(self) -> int:
        """The peer's connection-level send window for us."""
        return self.conn.outbound_flow_control_window

    def header_block_pending(self) -> bool:
        """Whether the peer is part-way through a header block."""
        return self.conn.header_block_pending()

    @property
    def input_pending(self) -> bool:
        """Whether the last :meth:`receive` stopped on its turn's work budget with frames
        still buffered: call ``receive(b"")`` on a later loop turn (reading paused meanwhile)."""
        return self.conn.input_pending()

    def stalled_bodies(self, now: float, timeout: float) -> list[int]:
        """Streams whose request body has not moved for ``timeout`` seconds while nothing was
        answered yet: a body that stops must not hold a stream (and its slot) forever. A body
        held back by our own windows (its reader has not consumed) is not the peer's pause."""
        stalled = []
        conn = self.conn
        for stream in self.streams.values():
            if stream.request_ended or stream.status or conn.remote_closed(stream.h2_stream):
                continue
            if conn.receive_window(stream.h2_stream) < _CREDIT_WAIT:
                stream.body_mark = -1  # waiting for our credit: the clock starts again later
            elif stream.body_mark != stream.body_received:
                stream.body_mark, stream.body_since = stream.body_received, now
            elif now - stream.body_since >= timeout:
                stalled.append(stream.stream_id)
        return stalled

    # -- start ---------------------------------------------------------------------------

    def start(self) -> None:
        self.conn.initiate_connection()
        self._grow_connection_window()
        self.flush()

    def start_upgraded(self, settings_header: bytes, method: bytes, headers: Headers) -> None:
        """Take over an ``Upgrade: h2c`` request as stream 1 (RFC 7540 section 3.2)."""
        self.conn.initiate_upgrade_connection(settings_header)
        self._grow_connection_window()
        self._hold_data = True
        self.flush()
        # The HTTP/1.1 request was complete: stream 1 starts half-closed (remote).
        self._open_stream(1, headers, True)

    def _grow_connection_window(self) -> None:
        extra = self.config.connection_window_size - 65535
        if extra > 0:
            self.conn.increment_flow_control_window(extra)

    # -- input ---------------------------------------------------------------------------

    def receive(self, data: bytes) -> bool:
        """Feed bytes from the peer; afterwards the sink holds everything that must go out.

        Returns :meth:`pump`'s answer: True when another scheduler turn is due.
        """
        if self._hold_data:
            self._hold_data = False
        self.awaiting_preface = False
        try:
            requests = self.conn.receive_requests(data)
            if requests is not None:
                # Only complete requests arrived, bodiless or with a small body (see
                # h2conn.connection): dispatched as h2's events would be.
                for what, stream_id, value in requests:
                    if what == REQUEST_ENDED:
                        self._request_received(stream_id, value, True)
                        self._request_ended(stream_id)
                    elif what == REQUEST_OPEN:
                        self._request_received(stream_id, value, False)
                    elif what == BODY_ENDED:
                        self._body_received(stream_id, value, len(value))
                        self._request_ended(stream_id)
                    else:
                        self._dispatch_events(value)  # h2's verdict on a body's length
                    if self.closed:
                        break
                return self.pump()
            grown = self.conn.receive_window_updates(data)
            if grown is not None:
                # Flow control binding: only window updates arrived (see h2conn.connection).
                for stream_id in grown:
                    if stream_id:
                        self._window_grew(stream_id)
                return self.pump()
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            # h2 has queued GOAWAY with the right code; send it and close.
            log.debug("protocol error from peer: %s", exc)
            note_protocol_error(exc)
            STATS.goaway_sent += 1
            count_code(STATS.goaway_sent_codes, int(exc.error_code))
            self.flush()
            self._close()
            return False
        self._dispatch_events(events)
        return self.pump()

    def _dispatch_events(self, events: list[h2.events.Event]) -> None:
        dispatch = self._dispatch
        for event in events:
            fn = dispatch.get(type(event))
            if fn is not None:
                fn(event)
                if self.closed:
                    break  # a budget ended the connection (see _provoked)

    def _provoked(self) -> None:
        """The peer made us reset one of its streams: that draws on the reset budget."""
        flood = self.conn.flood
        if flood is None:
            return
        try:
            flood.provoked_reset()
        except FloodError:
            self.close_with(ResetCode.ENHANCE_YOUR_CALM)

    def _on_request(self, event: h2.events.RequestReceived) -> None:
        self._request_received(event.stream_id, event.headers or [], event.stream_ended is not None)

    def _request_received(self, stream_id: int, headers: Headers, ended: bool) -> None:
        if self.goaway_sent and stream_id > self._last_stream_id:
            # Streams opened after our GOAWAY are refused: the client may retry them elsewhere.
            self.reset(stream_id, ResetCode.REFUSED_STREAM)
            return
        self._last_stream_id = max(self._last_stream_id, stream_id)
        self._open_stream(stream_id, headers, ended)
        if stream_id >= self._rotate_at and not self.goaway_sent:
            # --max-requests-per-connection: this stream is answered, later ones are refused.
            limit_event("requests_per_connection")
            self.shutdown(stream_id)

    def _open_stream(self, stream_id: int, headers: Headers, ended: bool) -> StreamState | None:
        """``ended``: END_STREAM came on the HEADERS (known to the handler before it runs; h2's
        stream state may already reflect DATA frames of the same read, so it cannot tell)."""
        h2_stream = self.conn.live_stream(stream_id)
        if h2_stream is None:
            # Reset by the peer in the same read that opened it: never dispatched.
            return None
        if headers != self._valid_fields:
            problem = request_problem(headers)
            if problem is not None:
                log.debug("stream %d: malformed request: %s", stream_id, problem)
                self.reset(stream_id, ResetCode.PROTOCOL_ERROR)
                self._provoked()
                return None
            # A copy: the handler may change the list it is given.
            self._valid_fields = headers.copy()
            self._valid_fields_id = None
        if len(self.streams) >= self.config.max_concurrent_streams:
            # RFC 9113 section 5.1.2: refuse the stream, keep the connection. A request that
            # never ends holds its slot until answered or timed out (stalled_bodies).
            limit_event("refused_stream")
            self.reset(stream_id, ResetCode.REFUSED_STREAM)
            self._provoked()
            return None
        if STATS.streams_active >= self._budget.streams:
            # The worker's fd budget (limits.WorkerBudget): a stream may hold a file; refuse it
            # (the client may retry) rather than let accept() or open() meet EMFILE.
            limit_event("fd_budget")
            self.reset(stream_id, ResetCode.REFUSED_STREAM)
            return None
        method = path = b""
        for name, value in headers:
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
            elif not name.startswith(b":"):
                break
        stream = StreamState(self, stream_id, h2_stream, method, path, headers)
        stream.request_ended = ended
        request_id = self._valid_fields_id
        if request_id is None:
            request_id = self._request_id(headers)
            if self._request_id is requestid.incoming:
                # The client's own id, or none: the same for the same fields.
                self._valid_fields_id = request_id
        stream.request_id = request_id
        self.streams[stream_id] = stream
        STATS.streams_active += 1
        STATS.streams_total += 1
        self._handler(stream)
        return stream

    def _on_data(self, event: h2.events.DataReceived) -> None:
        self._body_received(event.stream_id, event.data, event.flow_controlled_length)

    def _body_received(self, stream_id: int, data: bytes, flow_controlled_length: int) -> None:
        STATS.request_body_bytes += len(data)
        stream = self.streams.get(stream_id)
        if stream is None:
            reader = None
        else:
            reader = stream.request_body
            stream.body_received += flow_controlled_length
        if reader is not None:
            # Credit returns only as the application consumes (see return_credit).
            reader.feed(data, flow_controlled_length)
        elif flow_controlled_length:
            # Request bodies nobody consumes are drained: their credit goes straight back.
            self.conn.acknowledge_received_data(flow_controlled_length, stream_id)

    def return_credit(self, stream_id: int, length: int) -> None:
        """The application consumed ``length`` flow-controlled bytes of a request body."""
        if length and not self.closed:
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self.conn.acknowledge_received_data(length, stream_id)
            if self.conn.has_output():
                self.wake()

    def _on_trailers(self, event: h2.events.TrailersReceived) -> None:
        problem = trailers_problem(event.headers or [])
        if problem is not None:
            log.debug("stream %d: malformed trailers: %s", event.stream_id, problem)
            self.reset(event.stream_id, ResetCode.PROTOCOL_ERROR)

    def _on_stream_ended(self, event: h2.events.StreamEnded) -> None:
        self._request_ended(event.stream_id)

    def _request_ended(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.request_ended = True
            if stream.request_body is not None:
                stream.request_body.end()

    def _on_stream_reset(self, event: h2.events.StreamReset) -> None:
        code = int(event.error_code)
        if event.remote_reset:
            STATS.rst_received += 1
            count_code(STATS.rst_received_codes, code)
        else:
            # Reset by h2 or our connection object for a rule the peer broke on the stream
            # (DATA beyond content-length or on a half-closed stream, a window overflow).
            STATS.rst_sent += 1
            count_code(STATS.rst_sent_codes, code)
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.reset_code = code
            stream.reset_by_peer = event.remote_reset
        self._forget(event.stream_id)
        if not event.remote_reset:
            self._provoked()

    def _on_window_updated(self, event: h2.events.WindowUpdated) -> None:
        if event.stream_id == 0:
            return  # Parked-on-connection streams stay in the ready queue; pump() runs next.
        self._window_grew(event.stream_id)

    def _window_grew(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None and stream.blocked:
            stream.blocked = False
            STATS.flow_control_stall_seconds += time.monotonic() - stream.blocked_since
            self.schedule(stream)

    def _on_settings_changed(self, event: h2.events.RemoteSettingsChanged) -> None:
        if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
            # h2 has moved every stream's window by the delta: wake those with credit now.
            window = self.conn.stream_window
            for stream in self.streams.values():
                if stream.blocked and window(stream.h2_stream) > 0:
                    stream.blocked = False
                    STATS.flow_control_stall_seconds += time.monotonic() - stream.blocked_since
                    self.schedule(stream)

    def _on_terminated(self, event: h2.events.ConnectionTerminated) -> None:
        # h2 refuses to send anything after a GOAWAY from the peer: finish now.
        log.debug("peer sent GOAWAY code=%s", event.error_code)
        code = int(event.error_code) if event.error_code is not None else 0
        count_code(STATS.goaway_received_codes, code)
        self._close()

    # -- responses -----------------------------------------------------------------------

    def respond(
        self,
        stream: StreamState,
        status: int,
        headers: Headers,
        body: Body | None,
    ) -> None:
        """Send response headers; a non-empty body is scheduled under flow control."""
        stream.status = status
        code = _STATUS_BYTES.get(status) or str(status).encode()
        tail = DATES.fields_block()
        request_id = stream.request_id
        if request_id:
            tail += encode_fields(((requestid.HEADER, request_id.encode()),))
        end = body is None or body.done
        try:
            block = self._headers.response(code, headers, tail)
            self._send_block(stream, block, end, headers, code, request_id)
        except h2.exceptions.ProtocolError as exc:
            # The stream was closed under us (reset by the peer): nothing to answer.
            log.debug("stream %d: cannot send headers: %s", stream.stream_id, exc)
            if body is not None:
                body.close()
            self._forget(stream.stream_id)
            return
        if end:
            if body is not None:
                body.close()
            self._finish(stream)
            return
        assert body is not None
        stream.body = body
        if body.wakes_itself:
            body.set_waker(lambda: self._resume(stream))
        self.schedule(stream)

    def _resume(self, stream: StreamState) -> None:
        """A body that waited by itself is ready again."""
        if self.streams.get(stream.stream_id) is stream:
            self.schedule(stream)
            self.wake()

    def schedule(self, stream: StreamState) -> None:
        """Queue a stream whose body has something to send (idempotent)."""
        body = stream.body
        if stream.queued or stream.blocked or body is None or not body.ready:
            return
        stream.queued = True
        ready = self._ready
        if ready is None:
            ready = self._ready = collections.deque()
        ready.append(stream)

    def _send_headers(self, stream: StreamState, fields: Headers, end: bool) -> None:
        """h2's send_headers without its HPACK encoder: same state transitions, our block."""
        self._send_block(stream, self._headers.encode(fields), end, fields)

    def _send_block(
        self,
        stream: StreamState,
        block: bytes,
        end: bool,
        fields: Headers,
        status: bytes = b"",
        request_id: str = "",
    ) -> None:
        """Send ``block`` as h2's send_headers would: the encoding of ``fields``, or with a
        ``status``, of a response head (``:status``, ``fields``, then date, server and the
        request id if any)."""
        conn = self.conn
        if len(block) + 16 > conn.max_outbound_frame_size:
            # Needs CONTINUATION frames: rare enough to leave to h2.
            if status:
                tail = [(b"date", DATES.get()), (b"server", SERVER_NAME)]
                if request_id:
                    tail.append((requestid.HEADER, request_id.encode()))
                fields = [(b":status", status), *fields, *tail]
            conn.send_headers(stream.stream_id, fields, end_stream=end)
            self.flush()
            return
        conn.headers_sent(stream.h2_stream, end)
        block = self._headers.table_update() + block
        self.flush()
        self.sink.write(headers_header(len(block), stream.stream_id, end) + block)

    def respond_bytes(
        self,
        stream: StreamState,
        status: int,
        body: bytes,
        content_type: bytes = TEXT_PLAIN,
        extra: Headers | None = None,
        head: bool = False,
    ) -> None:
        headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
        if extra:
            headers.extend(extra)
        self.respond(stream, status, headers, None if head or not body else BytesBody(body))

    def reset(self, stream_id: int, code: ResetCode) -> None:
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            self.conn.reset_stream(stream_id, _H2_CODES[code])
        STATS.rst_sent += 1
        count_code(STATS.rst_sent_codes, int(code))
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.reset_code = int(code)
        self._forget(stream_id)

    # -- output --------------------------------------------------------------------------

    def flush(self) -> None:
        """Move whatever h2 has queued (control frames, HEADERS) into the sink, in order."""
        conn = self.conn
        if conn.has_output():  # data_to_send() would copy even nothing
            self.sink.write(conn.data_to_send())

    def pump(self) -> bool:
        """Hand the sink DATA frames while windows, the sink and the turn quantum allow.

        Returns True when it stopped only because the quantum ran out (the caller should
        schedule another turn after letting the event loop read).
        """
        self.flush()
        ready = self._ready
        if not ready or self._hold_data:
            return False
        sink = self.sink
        conn = self.conn
        max_frame = min(conn.max_outbound_frame_size, self.config.max_send_frame_size)
        budget = self.config.write_quantum
        turn = self.config.stream_turn_bytes
        solo = max(turn, sink.solo_run)
        flood = conn.flood
        stream_window, data_sent = conn.stream_window, conn.data_sent
        # Zero-copy or copy (README "Zero-copy or copy", measured): frames under
        # zero_copy_min_frame go by the copy path; a run the window cut short is written frame
        # by frame, so the peer reads the first while the next is written, any other run in
        # one write.
        sink.copy_small_frames = max_frame < self.config.zero_copy_min_frame
        while ready and sink.writable and budget > 0:
            conn_window = conn.outbound_flow_control_window
            if conn_window <= 0:
                # Waiting for the connection's credit: the next stream's run is read while
                # the peer reads what went out (the lone stream reads its own: sink).
                upcoming = ready[0]
                if upcoming.body is not None:
                    left = min(stream_window(upcoming.h2_stream), turn)
                    upcoming.body.read_ahead(sink, upcoming.stream_id, left, max_frame)
                return False
            stream = ready.popleft()
            stream.queued = False
            body = stream.body
            if body is None:
                continue  # finished or reset while queued: dropped lazily, no O(n) removal
            h2_stream = stream.h2_stream
            # Alone in the queue, a stream may use a larger run (fewer turns, bigger writes);
            # with company, runs start at the fairness quantum and double while the socket
            # takes each whole, back to the quantum at the first it cannot: while nothing
            # waits in the transport, a larger run delays no other stream. Connection credit
            # is never taken beyond an equal share of it, and a run the window cut short
            # changes nothing: scarce credit is shared at the quantum.
            stream_left = stream_window(h2_stream)
            window = min(stream_left, conn_window)
            shared = bool(ready)
            if not shared:
                quantum = solo
            else:
                quantum = self._shared_run
                if quantum > turn:
                    quantum = max(turn, min(quantum, conn_window // (len(ready) + 1)))
            allowed = min(window, quantum)
            sink.write_each_frame = window < quantum
            sink.shared_turn = shared
            sent = body.emit(sink, stream.stream_id, allowed, max_frame)
            if shared:
                if not sink.writable:
                    self._shared_run = turn
                elif sent >= quantum:
                    self._shared_run = min(2 * quantum, solo)
            if sent:
                data_sent(h2_stream, sent)
                stream_left -= sent
                budget -= sent
                if not stream.bytes_sent:
                    stream.first_byte_at = time.monotonic()
                stream.bytes_sent += sent
                if flood is not None:
                    flood.data_sent(sent // max_frame + 1)
            if body.failed:
                # The source broke mid-body (file shrank): never end it as if complete.
                log.warning("stream %d: body source failed, resetting", stream.stream_id)
                self.reset(stream.stream_id, ResetCode.INTERNAL_ERROR)
                self.flush()
            elif body.done:
                self._end_body(stream, body)
            elif not body.ready:
                pass  # waits for its producer, which calls schedule()
            elif stream_left <= 0:
                stream.blocked = True
                stream.blocked_since = time.monotonic()
                STATS.flow_control_stalls += 1
            else:
                stream.queued = True
                ready.append(stream)
        return budget <= 0 and bool(ready)

    def waiting_for_credit(self) -> bool:
        """Whether a body is held back by the peer's windows alone: what it sends next
        will be a WINDOW_UPDATE (busypoll.py)."""
        if self._ready:
            return self.conn.outbound_flow_control_window <= 0
        return any(stream.blocked for stream in self.streams.values())

    def _end_body(self, stream: StreamState, body: Body) -> None:
        """The last DATA frame has gone (or trailers go now): close our side."""
        trailers = body.trailers
        if trailers is not None:
            # Our HPACK block and h2's state transitions, as for the response's HEADERS (h2's
            # send_headers would run its full encoder: a tenth of a small gRPC call's CPU).
            self._send_headers(stream, trailers, True)
        else:
            self.conn.end_stream_sent(stream.h2_stream)
        self._finish(stream)

    # -- lifecycle -----------------------------------------------------------------------

    def _finish(self, stream: StreamState) -> None:
        """Our side of the stream is complete. A request still arriving is then told to stop
        with RST_STREAM(NO_ERROR) (RFC 9113 section 8.1): a stream whose request never ends
        would otherwise stay open in h2 for the connection's life, outside every count."""
        if not stream.request_ended and not self.conn.remote_closed(stream.h2_stream):
            # Not a failure of the exchange: the stream is not marked reset (its handler is
            # not cancelled, its log line is a complete response).
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self.conn.reset_stream(stream.stream_id, h2.errors.ErrorCodes.NO_ERROR)
            self.flush()  # behind the response's last frame, already in the sink
            STATS.rst_sent += 1
            count_code(STATS.rst_sent_codes, 0)
        self._forget(stream.stream_id)
        if self.goaway_sent and not self.streams:
            self._close()

    def _forget(self, stream_id: int) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            return
        STATS.streams_active -= 1
        if stream.blocked:
            # Ended while parked (reset, connection lost): that wait was a stall too.
            STATS.flow_control_stall_seconds += time.monotonic() - stream.blocked_since
        self.conn.stream_finished(stream_id)
        self.sink.drop_read_ahead(stream_id)
        body = stream.body
        if body is not None:
            stream.mode = body.mode
            body.close()
            stream.body = None
        if stream.request_body is not None:
            stream.request_body.end(ConnectionResetError("stream reset"))
        task = stream.task
        if task is not None and not task.done() and stream.reset_code is not None:
            # The handler sees the cancellation at its next await.
            task.cancel()
        if self._on_stream_end is not None:
            self._on_stream_end(stream)

    def shutdown(self, last_stream_id: int | None = None) -> None:
        """Graceful close: GOAWAY(NO_ERROR) naming the last stream we will answer (by default
        the highest the peer opened; h2 has parsed the whole read batch by then).

        The frame is written by hand: after h2's own close_connection() it refuses to send
        DATA, and in-flight streams must still finish.
        """
        if self.goaway_sent or self.closed:
            return
        self.goaway_sent = True
        STATS.goaway_sent += 1
        codes = STATS.goaway_sent_codes
        codes[0] = codes.get(0, 0) + 1  # NO_ERROR
        self.flush()
        frame = GoAwayFrame(0)
        if last_stream_id is None:
            last_stream_id = self.conn.highest_inbound_stream_id
        frame.last_stream_id = last_stream_id
        frame.error_code = h2.errors.ErrorCodes.NO_ERROR
        self._last_stream_id = frame.last_stream_id
        self.sink.write(frame.serialize())
        if not self.streams:
            self._close()

    def announce_shutdown(self) -> None:
        """The first half of a graceful close (RFC 9113 section 6.8): GOAWAY(NO_ERROR) with
        the largest stream id, then a PING. The peer opens no new stream, and requests already
        on the wire are still served; the PING's ACK proves the peer has seen the GOAWAY, and
        then :meth:`shutdown` names the real last stream. A single GOAWAY naming the highest
        stream so far would refuse requests crossing it, which a proxy multiplexing many
        requests onto one connection (HAProxy) turns into failed client requests.
        """
        if self.goaway_sent or self.closed or self.shutdown_announced:
            return
        self.shutdown_announced = True
        STATS.goaway_sent += 1  # a GOAWAY frame like any other (the final one counts too)
        codes = STATS.goaway_sent_codes
        codes[0] = codes.get(0, 0) + 1  # NO_ERROR
        self.flush()
        frame = GoAwayFrame(0)
        frame.last_stream_id = (1 << 31) - 1
        frame.error_code = h2.errors.ErrorCodes.NO_ERROR
        self.sink.write(frame.serialize())
        self.conn.ping(SHUTDOWN_PING)
        self.flush()

    def _on_ping_ack(self, event: h2.events.PingAckReceived) -> None:
        if self.shutdown_announced and event.ping_data == SHUTDOWN_PING:
            self.shutdown()

    def close_with(self, code: ResetCode) -> None:
        """Connection error found outside a read (a timeout): GOAWAY(code), then close."""
        if self.closed:
            return
        self.goaway_sent = True
        STATS.goaway_sent += 1
        count_code(STATS.goaway_sent_codes, int(code))
        # h2 refuses a second GOAWAY after the peer's own; then there is nothing to tell it.
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.conn.close_connection(_H2_CODES[code])
        self._close()

    def _close(self) -> None:
        self.flush()
        if not self.closed:
            self.closed = True
            self._on_close()

    def connection_lost(self) -> None:
        """The transport is gone: release every stream's resources."""
        self.closed = True
        for stream in list(self.streams.values()):
            if stream.reset_code is None:
                # Interrupted: logged as cancelled, and its handler task is cancelled.
                stream.reset_code = int(ResetCode.CANCEL)
            self._forget(stream.stream_id)
        if self._ready is not None:
            self._ready.clear()
        self.conn.release_buffers()


_STATUS_BYTES = {code: str(code).encode() for code in range(100, 600)}
