"""asyncio glue for one connection: sniff the first bytes, feed the session, own pause/resume.

Everything protocol-shaped happens in :mod:`h2stream.session`; this module only moves bytes
between the transport and the session, and turns the transport's flow-control callbacks into
the sink's ``writable`` flag. Pausing writes also pauses reads, so a peer that never reads
cannot make us queue the acknowledgements its frames provoke.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING, cast

from . import http1
from .session import Handler, Session
from .sink import TransportSink
from .stats import STATS

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("h2stream.protocol")


class H2Protocol(asyncio.Protocol):
    def __init__(self, server: Server, handler: Handler, tls: bool) -> None:
        self._server = server
        self._handler = handler
        self._tls = tls
        self._transport: asyncio.Transport | None = None
        self._sink: TransportSink | None = None
        self.session: Session | None = None
        # Bytes seen before we know what the peer speaks (preface or HTTP/1.1 head).
        self._sniffed = b""
        self._upgrade_allowed = not tls
        self._pump_scheduled = False
        self._loop = asyncio.get_running_loop()

    # -- transport callbacks -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self._transport = transport
        STATS.connections_accepted += 1
        STATS.connections_active += 1
        self._server.connections.add(self)
        # high=0: pause_writing means "the transport holds bytes", resume means "it is empty".
        transport.set_write_buffer_limits(high=0, low=0)
        raw = None
        if not self._tls and self._server.config.sendfile:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                raw = socket.fromfd(sock.fileno(), sock.family, socket.SOCK_STREAM)
                raw.setblocking(False)
        self._sink = TransportSink(transport, raw)
        if self._tls:
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
                self._start_session()

    def data_received(self, data: bytes) -> None:
        try:
            session = self.session
            if session is not None:
                self._after_session_io(session.receive(data))
            else:
                self._sniff(data)
        except Exception:
            # A bug must cost one connection, never the process.
            log.exception("internal error; closing the connection")
            self.abort()

    def pause_writing(self) -> None:
        assert self._sink is not None and self._transport is not None
        self._sink.writable = False
        if not self._transport.is_closing():
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        assert self._sink is not None and self._transport is not None
        self._sink.writable = True
        if not self._transport.is_closing():
            self._transport.resume_reading()
        if self.session is not None:
            self._pump()

    def eof_received(self) -> bool | None:
        return False  # close our side too: nothing more can be requested

    def connection_lost(self, exc: Exception | None) -> None:
        STATS.connections_active -= 1
        self._server.connections.discard(self)
        if self.session is not None:
            self.session.connection_lost()
        if self._sink is not None:
            self._sink.close()

    # -- session driving -----------------------------------------------------------------

    def _start_session(self) -> Session:
        assert self._sink is not None
        self.session = Session(
            self._server.config,
            self._sink,
            self._handler,
            self._close,
            wake=self.schedule_pump,
            on_stream_end=self._server.on_stream_end,
        )
        if self._server.draining:
            self.session.goaway_sent = True
        return self.session

    def _after_session_io(self, more: bool = False) -> None:
        assert self._sink is not None
        self._sink.flush()
        if more:
            self.schedule_pump()

    def _pump(self) -> None:
        self._pump_scheduled = False
        session = self.session
        if session is None or session.closed:
            return
        self._after_session_io(session.pump())

    def schedule_pump(self) -> None:
        """Run the scheduler on a later loop iteration (after pending reads)."""
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self._loop.call_soon(self._pump)

    def _close(self) -> None:
        if self._sink is not None:
            self._sink.flush()
        if self._transport is not None:
            self._transport.close()

    def shutdown(self) -> None:
        """Begin a graceful close (GOAWAY); sniffing connections just close."""
        if self.session is None:
            if self._transport is not None:
                self._transport.close()
            return
        self.session.shutdown()
        self._after_session_io()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # -- before HTTP/2 -------------------------------------------------------------------

    def _sniff(self, data: bytes) -> None:
        buffered = self._sniffed + data
        if http1.could_be_preface(buffered):
            if len(buffered) < len(http1.PREFACE):
                self._sniffed = buffered
                return
            self._sniffed = b""
            session = self._start_session()
            session.start()
            self._after_session_io(session.receive(buffered))
            return
        try:
            parsed = http1.parse_head(buffered)
        except http1.BadRequest as exc:
            too_large = "too large" in str(exc)
            self._refuse(http1.HEAD_TOO_LARGE if too_large else http1.BAD_REQUEST)
            return
        if parsed is None:
            self._sniffed = buffered
            return
        request, head_length = parsed
        settings = http1.upgrade_settings(request) if self._upgrade_allowed else None
        if settings is None:
            self._refuse(http1.HTTP2_REQUIRED)
            return
        self._sniffed = b""
        assert self._transport is not None
        self._transport.write(http1.SWITCHING_PROTOCOLS)
        session = self._start_session()
        try:
            session.start_upgraded(settings, request.method, http1.upgraded_headers(request))
        except Exception as exc:  # a malformed HTTP2-Settings value
            log.debug("bad h2c upgrade: %s", exc)
            self._close()
            return
        rest = buffered[head_length:]
        self._after_session_io(session.receive(rest) if rest else False)

    def _refuse(self, response: bytes) -> None:
        assert self._transport is not None
        self._sniffed = b""
        self._transport.write(response)
        self._transport.close()
