"""asyncio glue for one connection: sniff the first bytes, feed the session, own pause/resume.

Everything protocol-shaped happens in :mod:`h2stream.core.session`; this module only moves bytes
between the transport and the session, and turns the transport's flow-control callbacks into
the sink's ``writable`` flag. Pausing writes also pauses reads, so a peer that never reads
cannot make us queue the acknowledgements its frames provoke.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import cast

from h2stream.core import proxy_header
from h2stream.core import sniff as http1
from h2stream.core.exchange import NO_ADDRESSES, Handler
from h2stream.core.limits import limit_event
from h2stream.core.reads import READS
from h2stream.core.session import Session
from h2stream.core.stats import STATS
from h2stream.http1.connection import Http1Connection
from h2stream.io.busypoll import BusyPoll
from h2stream.io.edge import addresses_of, count, peer_address, refuse
from h2stream.io.host import ConnectionHost
from h2stream.io.http1sink import Http1TransportSink
from h2stream.io.sink import SHORT_SOLO_RUN, TransportSink, WorkerPools
from h2stream.io.timeouts import ConnectionWatch, buffer_cap

log = logging.getLogger("h2stream.protocol")

# After our FIN, how long a peer may take to close its side before we close the socket.
LINGER_SECONDS = 5.0
# The TLS transport's pause point (see connection_made).
TLS_WRITE_HIGH = 64 * 1024


class H2Protocol(asyncio.Protocol):
    def __init__(
        self,
        server: ConnectionHost,
        handler: Handler,
        tls: bool,
        pools: WorkerPools,
        proxied: proxy_header.ProxyHeader | None = None,
        proxy: bool = False,
    ) -> None:
        """``proxy``: its listener expects a PROXY header first; ``proxied``: the header
        already read before TLS (proxy_tls.py)."""
        self._server = server
        # The worker's pools and budgets (its server's context), for the writer and session.
        self._pools = pools
        self._handler = handler
        self._tls = tls
        self._transport: asyncio.Transport | None = None
        self._sink: TransportSink | None = None
        self.session: Session | None = None
        # Set instead of the session when the peer speaks HTTP/1.x.
        self.http1: Http1Connection | None = None
        versions = server.config.http.split(",")
        self._http1_allowed = "1.1" in versions
        self._http2_allowed = "2" in versions
        self._raw: socket.socket | None = None
        # Bytes seen before we know what the peer speaks (preface or HTTP/1.1 head).
        self._sniffed = b""
        self._upgrade_allowed = not tls
        self._pump_scheduled = False
        # Output waits in the worker's FlushBatch for the end of the loop's turn.
        self._flush_due = False
        self._reading_paused = False
        # The session stopped on its per-turn work budget: reading waits for its next turn.
        self._input_held = False
        self._backlog_cap = server.config.max_send_frame_size + 65536
        self._loop = asyncio.get_running_loop()
        # Timeout marks, checked by the server's sweeper (timeouts.py); None until accepted.
        self.watch: ConnectionWatch | None = None
        # Turned away at accept (edge.py: a limit, or a PROXY source not trusted): whatever
        # becomes of its transport, connection_lost has nothing to undo.
        self._refused = False
        # Who the client is, for logs and per-client limits: the PROXY header's address, else
        # the peer's ("-" on a Unix socket); and its per-client table key while it counts.
        self._client = "-"
        self._addresses = NO_ADDRESSES
        self._client_key: str | None = None
        # A PROXY header still due (its bytes so far) and its deadline; None once read.
        self._header_due: bytes | None = None
        self._header_timer: asyncio.TimerHandle | None = None
        self._proxied = proxied
        self._proxy = proxy and proxied is None
        # Polls for a peer's credit (busypoll.py): on h2c on the sink's socket, made with it;
        # on TLS without reading, on a duplicate of its own made at the first wait.
        self._poller: BusyPoll | None = None
        self._poll_tls = tls and server.config.busy_poll_us > 0

    # -- transport callbacks -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self._server.handshaking.discard(self)
        edge = self._server.edge
        if len(self._server.connections) >= self._server.max_connections:
            # Refused before anything is allocated (not even the sendfile socket duplicate),
            # answered in the protocol the client speaks (edge.py), then the fd is freed.
            self._refused = True
            alpn = self._alpn(transport)
            due = self._proxy
            refuse(edge, transport, "max_connections", header_due=due, alpn=alpn)
            return
        peer = peer_address(transport)
        proxied = self._proxied
        if proxied is not None:
            # Its header came before TLS and is read (proxy_tls.py); LOCAL is the balancer.
            client = proxied.source or peer
            if self._admit(transport, client, limit=not proxied.local, header=proxied):
                self._enter(transport)
                self._accepted(transport)
            return
        if self._proxy:
            if not edge.trusts(peer):
                edge.header_failed("untrusted")
                self._refused = True
                transport.close()
                return
            # It holds an fd, so it counts against --max-connections from now; it is served
            # once its header names the client (_take_proxy_header).
            self._enter(transport)
            self._header_due = b""
            self._header_timer = self._loop.call_later(edge.header_timeout, self._header_late)
            return
        if self._admit(transport, peer):
            self._enter(transport)
            self._accepted(transport)

    def _enter(self, transport: asyncio.Transport) -> None:
        """Count the connection as this worker's (the sweeper watches it from now)."""
        self._transport = transport
        self.watch = ConnectionWatch(self, transport, self._server.config)
        STATS.connections_active += 1
        self._server.connections.add(self)

    def _admit(
        self,
        transport: asyncio.Transport,
        client: str | None,
        rest: bytes = b"",
        limit: bool = True,
        header: proxy_header.ProxyHeader | None = None,
    ) -> bool:
        """The per-client limits (edge.py) for ``client``; a connection they refuse stops
        counting and is handed to a Refusal with ``rest``, the bytes already read."""
        self._client = client or "-"
        self._addresses = addresses_of(transport, header)
        edge = self._server.edge
        key, refused = edge.admit(client if limit else None)
        if refused is None:
            self._client_key = key
            STATS.connections_accepted += 1
            return True
        if self._transport is not None:
            STATS.connections_active -= 1
            self._server.connections.discard(self)
            self._transport = self.watch = None
        self._refused = True
        refuse(edge, transport, refused, client=client, data=rest, alpn=self._alpn(transport))
        return False

    def _alpn(self, transport: asyncio.Transport) -> str | None:
        if not self._tls:
            return None
        ssl_object = transport.get_extra_info("ssl_object")
        return ssl_object.selected_alpn_protocol() if ssl_object is not None else None

    def _take_proxy_header(self, data: bytes) -> bytes:
        """Read the PROXY header (proxy_header.py); the client it names is admitted or refused.
        Returns the client's own bytes that followed it (none while it is incomplete)."""
        transport = self._transport
        assert self._header_due is not None and transport is not None
        edge = self._server.edge
        buffered = self._header_due + data
        try:
            header = proxy_header.parse(buffered, edge.header_limit)
        except proxy_header.ProxyHeaderError as exc:
            self._header_done()
            edge.header_failed(exc.reason)
            transport.close()
            return b""
        if header is None:
            self._header_due = buffered
            return b""
        self._header_done()
        count(STATS.proxy_headers, "local" if header.local else f"v{header.version}")
        rest = buffered[header.length :]
        # LOCAL: the balancer's own health check, under no per-client limit.
        client = header.source or peer_address(transport)
        if not self._admit(transport, client, rest, limit=not header.local, header=header):
            return b""
        self._accepted(transport)
        return rest

    def _header_done(self) -> None:
        self._header_due = None
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_late(self) -> None:
        self._header_timer = None
        if self._header_due is not None and self._transport is not None:
            self._header_due = None
            self._server.edge.header_failed("timeout")
            self._transport.close()

    def _accepted(self, transport: asyncio.Transport) -> None:
        """An admitted connection: its writer, and for TLS its protocol by ALPN."""
        config = self._server.config
        raw = None
        if not self._tls and (config.sendfile or config.busy_poll_us):
            sock = transport.get_extra_info("socket")
            if sock is not None:
                raw = socket.fromfd(sock.fileno(), sock.family, socket.SOCK_STREAM)
                raw.setblocking(False)
        self._raw = raw
        if raw is not None and config.busy_poll_us:
            self._poller = BusyPoll(raw, config.busy_poll_us)
        buffers, read_ahead = self._pools.copy_buffers, self._pools.read_ahead
        # TLS: queued output goes to the SSL layer in pieces of its pause point, since it
        # encrypts each write whole (B-1k, A-1g and D-zstd over TLS: as fast, 1.3 MiB less).
        if self._tls:
            self._sink = TransportSink(
                transport, raw, buffers, read_ahead, TLS_WRITE_HIGH, SHORT_SOLO_RUN
            )
        else:
            self._sink = TransportSink(
                transport, raw, buffers, read_ahead, sendfile=config.sendfile
            )
        # Cleartext, high=0: pause_writing means "the transport holds bytes", resume means
        # "it is empty", which the zero-copy path needs. TLS has its own record buffers and
        # does not report "empty" reliably to an app transport set that tight, so it gets a
        # small bounded window instead: uvloop encrypts each write at once into a memory BIO
        # that keeps its largest size for the connection's life, and the socket's backlog
        # adds as much again. 64 KiB cut TLS C-many's peak RSS from 48.5 to 38.4 MiB at the
        # same throughput (README "Benchmarks", peak RSS).
        if self._tls:
            transport.set_write_buffer_limits(high=TLS_WRITE_HIGH, low=TLS_WRITE_HIGH // 4)
        else:
            transport.set_write_buffer_limits(high=0, low=0)
        if self._tls:
            ssl_object = transport.get_extra_info("ssl_object")
            alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
            if alpn == "h2":
                self._start_session().start()
                self._after_io()
            elif alpn == "http/1.1":
                self._start_http1()

    def data_received(self, data: bytes) -> None:
        READS.value += 1  # before parsing: see core/reads.py
        try:
            http1 = self.http1
            if http1 is not None:
                more = http1.receive(data)
                if more or not self._defer_flush():
                    self._after_io(more)
                return
            session = self.session
            if session is not None:
                if session.closed:
                    return  # a lingering close (see _close): input is read and dropped
                more = session.receive(data)
                if not more and not session.input_pending and self._defer_flush():
                    return
                self._after_io(more)
                if session.input_pending:
                    self._hold_input()
                if not self._sink.writable:  # type: ignore[union-attr]
                    self._cap_backlog()
                elif self._tls:
                    if self._poll_tls and self._may_poll(session):
                        self._wait_readable_tls()
                elif self._poller is not None and self._may_poll(session):
                    self._poller.poll(self._take_polled)
            else:
                self._sniff(data)
        except Exception:
            # A bug must cost one connection, never the process.
            log.exception("internal error; closing the connection")
            self.abort()

    def _defer_flush(self) -> bool:
        """Leave this read's output to the end of the loop's turn (flushbatch.py), where the
        worker has other connections and the transport takes more."""
        if STATS.connections_active < 2 or not self._sink.writable:  # type: ignore[union-attr]
            return False
        if not self._flush_due:
            self._flush_due = True
            self._pools.flushes.add(self)
        return True

    def flush_deferred(self) -> None:
        self._flush_due = False
        try:
            self._after_io()
            if self.session is not None and not self._sink.writable:  # type: ignore[union-attr]
                self._cap_backlog()  # as data_received does after an immediate flush
        except Exception:
            log.exception("internal error while writing; closing the connection")
            self.abort()

    def _may_poll(self, session: Session) -> bool:
        """Poll for credit only where it replaces sleep: this worker's one connection, with
        nothing queued to run, a body waiting for the peer's windows alone."""
        return (
            STATS.connections_active == 1
            and not session.closed
            and not self._pump_scheduled
            and not self._reading_paused
            and not self._input_held
            and session.waiting_for_credit()
        )

    def _wait_readable_tls(self) -> None:
        """TLS polls without reading (uvloop's SSL layer owns the reads: busypoll.py), on a
        duplicate of the socket made at the first wait: only a worker's lone connection
        ever waits, so the others never pay for one."""
        poller = self._poller
        if poller is None:
            transport = self._transport
            sock = transport.get_extra_info("socket") if transport is not None else None
            if sock is None:
                self._poll_tls = False
                return
            try:
                dup = socket.fromfd(sock.fileno(), sock.family, socket.SOCK_STREAM)
            except OSError:  # out of fds, say: this connection sleeps as before, no poll
                self._poll_tls = False
                return
            dup.setblocking(False)
            poller = self._poller = BusyPoll(dup, self._server.config.busy_poll_us)
        poller.wait_readable()

    def _drop_poller(self) -> None:
        poller, self._poller = self._poller, None
        if poller is not None and self._tls:
            poller.close()  # TLS's duplicate is the poller's own (h2c's is the sink's)

    def _take_polled(self, data: bytes) -> bool:
        """Bytes the poller read: the same path as data_received. Returns whether to poll on."""
        session = self.session
        if session is None:
            return False
        READS.value += 1
        self._after_io(session.receive(data))
        if session.input_pending:
            self._hold_input()
            return False
        if not self._sink.writable:  # type: ignore[union-attr]
            self._cap_backlog()
            return False
        return self._may_poll(session)

    def _hold_input(self) -> None:
        """The session stopped on its turn's work budget (Config.read_turn_units) with frames
        still buffered: stop reading and give the rest a turn of its own after the callbacks
        already due, other connections' reads among them. One read (uvloop hands over
        several 256 KiB at a wakeup) can then never hold the worker for long."""
        if self._input_held:
            return
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._input_held = True
        transport.pause_reading()
        self._loop.call_soon(self._continue_input)

    def _continue_input(self) -> None:
        self._input_held = False
        session, transport = self.session, self._transport
        if session is None or session.closed or transport is None or transport.is_closing():
            return
        try:
            self._after_io(session.receive(b""))
            if session.input_pending:
                # Still more buffered: another turn, reading stays paused.
                self._input_held = True
                self._loop.call_soon(self._continue_input)
            elif not self._reading_paused:
                transport.resume_reading()
        except Exception:
            log.exception("internal error; closing the connection")
            self.abort()

    def pause_writing(self) -> None:
        # Reading goes on: WINDOW_UPDATE, RST_STREAM and new (small) requests must still be
        # seen while a big body fills the socket. What a peer that never reads could make
        # us queue (acknowledgements) is capped in data_received instead.
        assert self._sink is not None
        self._sink.writable = False

    def resume_writing(self) -> None:
        assert self._sink is not None and self._transport is not None
        self._sink.writable = True
        if self._reading_paused:
            self._reading_paused = False
            if not self._transport.is_closing() and not self._input_held:
                self._transport.resume_reading()
        if self.http1 is not None:
            self._pump_http1()
        elif self.session is not None:
            try:
                self._pump()
            except Exception:
                log.exception("internal error while writing; closing the connection")
                self.abort()

    def _cap_backlog(self) -> None:
        """Stop reading while the transport holds more than one frame's rest plus a margin of
        control frames: a peer that provokes ACKs but never reads gets no further."""
        transport = self._transport
        if (
            transport is not None
            and not self._reading_paused
            and self.output_queued() > self._backlog_cap
            and not transport.is_closing()
        ):
            self._reading_paused = True
            transport.pause_reading()

    def eof_received(self) -> bool | None:
        return False  # close our side too: nothing more can be requested

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        if self._header_due is not None:
            # Gone before its PROXY header was complete (a TCP check, or cut short).
            self._server.edge.header_failed("truncated" if self._header_due else "empty")
            self._header_done()
        if self._client_key is not None:
            self._server.edge.release(self._client_key)
            self._client_key = None
        STATS.connections_active -= 1
        self._server.connections.discard(self)
        if self.session is not None:
            self.session.connection_lost()
        if self.http1 is not None:
            self.http1.connection_lost()
        if self._sink is not None:
            self._sink.close()
        self._drop_poller()
        # h2's connection and our session are reference cycles, freed only by the garbage
        # collector, and through them the transport would wait too: for TLS, uvloop's SSL
        # layer with its 256 KiB read buffer and OpenSSL's state. Dropped here, they go now
        # (TLS C-many: the heap kept 1.5 MiB more after every run until a full collection).
        self._transport = None
        self.watch = None
        self._server.idle_trim.connection_closed()

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
            budget=self._pools.budget,
        )
        # Who and how, for the access log: once per connection, never per stream.
        self.session.peer = self._client
        self.session.addresses = self._addresses
        self.session.tls = self._tls
        return self.session

    def _announce_if_draining(self, session: Session) -> None:
        """A session that starts after the drain began (its peer was accepted just before the
        listener closed, or was still in its TLS handshake or sniffing) gets the same two-step
        GOAWAY as every other: requests already on their way are served, not refused."""
        if self._server.draining:
            session.announce_shutdown()

    def _after_io(self, more: bool = False) -> None:
        """After either protocol's input or turn: flush, enforce the buffer cap, and ask for
        another turn if its quantum ran out."""
        assert self._sink is not None
        self._sink.flush()
        if not self._sink.writable:
            self._check_buffer()
        if more:
            self.schedule_pump()

    def output_queued(self) -> int:
        """Bytes of output held in memory (the transport's and the writer's)."""
        sink = self._sink
        if sink is not None:
            return sink.queued()
        transport = self._transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def output_unsent(self) -> int:
        """Output not yet in the kernel, a zero-copy frame's tail included (timeouts.py)."""
        sink = self._sink
        return sink.unsent() if sink is not None else self.output_queued()

    def _check_buffer(self) -> None:
        """--max-connection-buffer: a peer that does not read cannot make us queue more."""
        transport = self._transport
        if transport is not None and self.output_queued() > buffer_cap(self._server.config):
            limit_event("connection_buffer")
            transport.abort()

    def _pump(self) -> None:
        self._pump_scheduled = False
        if self.http1 is not None:
            self._pump_http1()
            return
        session = self.session
        if session is None or session.closed:
            return
        try:
            self._after_io(session.pump())
        except Exception:
            # As in data_received: a bug (or a failing body source) costs one connection.
            log.exception("internal error while sending; closing the connection")
            self.abort()

    def schedule_pump(self) -> None:
        """Run the scheduler on a later loop iteration (after pending reads)."""
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self._loop.call_soon(self._pump)

    def _close(self) -> None:
        if self._sink is not None:
            self._sink.flush()
        transport = self._transport
        if transport is None:
            return
        if transport.can_write_eof() and not transport.is_closing():
            # Lingering close (as nginx's lingering_close): FIN once the queued bytes are out,
            # then read and drop until the peer closes. Closing with unread input (a slow
            # reader's WINDOW_UPDATEs) makes the kernel send RST and discard what is still
            # queued for the peer: the end of a download drained by SIGTERM would be lost.
            # On the next loop turn, after the caller flushed what it still had queued.
            self._loop.call_soon(self._linger, transport)
        else:
            transport.close()

    def _linger(self, transport: asyncio.Transport) -> None:
        if transport.is_closing():
            return
        if self._sink is not None:
            self._sink.flush()
        transport.write_eof()
        transport.resume_reading()
        self._loop.call_later(LINGER_SECONDS, transport.close)

    def announce_shutdown(self) -> None:
        """The first half of a graceful close (Session.announce_shutdown); sniffing
        connections are left to become sessions or to be closed by :meth:`shutdown`."""
        if self.session is not None:
            self.session.announce_shutdown()
            self._after_io()
        elif self.http1 is not None:
            self.http1.shutdown()  # idle keep-alive closes now; in flight finishes, last

    def shutdown(self) -> None:
        """Begin a graceful close (GOAWAY); sniffing connections just close."""
        if self.http1 is not None:
            self.http1.shutdown()
            return
        if self.session is None:
            if self._transport is not None:
                self._transport.close()
            return
        self.session.shutdown()
        self._after_io()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # -- before HTTP/2 -------------------------------------------------------------------

    def _sniff(self, data: bytes) -> None:
        if self._header_due is not None:
            data = self._take_proxy_header(data)
            if not data:
                return
        buffered = self._sniffed + data
        if self._http2_allowed and http1.could_be_preface(buffered):
            if len(buffered) < len(http1.PREFACE):
                self._sniffed = buffered
                return
            self._sniffed = b""
            session = self._start_session()
            session.start()
            self._announce_if_draining(session)
            self._after_io(session.receive(buffered))
            if session.input_pending:
                self._hold_input()
            return
        # PRI is the preface's method, never an HTTP/1.x request's (RFC 9113 section 3.4):
        # a broken preface is refused below, not parsed.
        if self._http1_allowed and not buffered.startswith(b"PRI"):
            self._sniffed = b""
            self._start_http1()
            assert self.http1 is not None
            self._after_io(self.http1.receive(buffered))
            return
        try:
            parsed = http1.parse_head(buffered)
        except http1.BadRequest as exc:
            too_large = isinstance(exc, http1.HeadTooLarge)
            self._refuse(http1.HEAD_TOO_LARGE if too_large else http1.BAD_REQUEST)
            return
        if parsed is None:
            self._sniffed = buffered
            return
        request, head_length = parsed
        settings = http1.upgrade_settings(request) if self._upgrade_allowed else None
        if settings is None:
            refusal = http1.HTTP2_REQUIRED
            self._refuse(http1.without_body(refusal) if request.method == b"HEAD" else refusal)
            return
        if http1.settings_problem(settings) is not None:
            self._refuse(http1.BAD_SETTINGS)  # a 400 before the 101, not a silent close after
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
        self._after_io(session.receive(rest) if rest else False)
        if session.input_pending:
            self._hold_input()

    def _refuse(self, response: bytes) -> None:
        assert self._transport is not None
        self._sniffed = b""
        self._transport.write(response)
        self._transport.close()

    # -- HTTP/1.x ------------------------------------------------------------------------

    def _start_http1(self) -> None:
        """From now on the connection speaks HTTP/1.x: its writer unwraps body frames."""
        transport = self._transport
        assert transport is not None and self._sink is not None
        config = self._server.config
        pools = self._pools
        self._drop_poller()  # busy polling waits for HTTP/2 window updates only
        self._poll_tls = False
        self._sink = Http1TransportSink(
            transport,
            self._raw,
            pools.copy_buffers,
            pools.read_ahead,
            TLS_WRITE_HIGH if self._tls else 256 * 1024,
            SHORT_SOLO_RUN,
            sendfile=config.sendfile and not self._tls,
        )
        self.http1 = Http1Connection(
            config,
            self._sink,
            self._handler,
            self._close,
            self.schedule_pump,
            self._set_reading,
            self._server.on_stream_end,
            self._upgrade_from_http1 if self._upgrade_allowed and self._http2_allowed else None,
        )
        self.http1.peer = self._client
        self.http1.addresses = self._addresses
        self.http1.tls = self._tls
        if self._server.draining:
            self.http1.draining = True

    def _pump_http1(self) -> None:
        http1 = self.http1
        if http1 is None or http1.closed:
            return
        try:
            self._after_io(http1.pump())
        except Exception:
            log.exception("internal error while sending; closing the connection")
            self.abort()

    def _set_reading(self, reading: bool) -> None:
        """The HTTP/1.1 connection's read pause: pipelining depth and unread request bodies."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if reading:
            transport.resume_reading()
        else:
            transport.pause_reading()

    def _upgrade_from_http1(
        self, settings: bytes, method: bytes, headers: list[tuple[bytes, bytes]], rest: bytes
    ) -> None:
        """``Upgrade: h2c`` on the first request: the connection becomes HTTP/2 (its
        request is stream 1)."""
        assert self._transport is not None and self._sink is not None
        self.http1 = None
        self._sink.flush()
        self._sink = TransportSink(
            self._transport, self._raw, self._pools.copy_buffers, self._pools.read_ahead,
            sendfile=self._server.config.sendfile,
        )  # fmt: skip
        self._transport.write(http1.SWITCHING_PROTOCOLS)
        session = self._start_session()
        try:
            session.start_upgraded(settings, method, headers)
        except Exception as exc:  # a malformed HTTP2-Settings value
            log.debug("bad h2c upgrade: %s", exc)
            self._close()
            return
        self._announce_if_draining(session)
        self._after_io(session.receive(rest) if rest else False)
        if session.input_pending:
            self._hold_input()
