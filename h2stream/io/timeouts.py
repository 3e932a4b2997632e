"""Connection timeouts driven by one timer per worker: preface, header block, idle and send.

A timer per frame or per read would put work on the hot path, so nothing is recorded there.
Each connection carries a :class:`ConnectionWatch` of a few marks, and the server's
:class:`Sweeper` checks every connection every ``interval`` seconds (a quarter of the smallest
timeout, at most one second). A mark is a cheap snapshot compared between sweeps: the highest
stream id the peer opened (new requests), the bytes streams have sent, the transport's queue.
A timeout therefore fires between its value and its value plus one interval after the fact.

What fires, and the answer (every one counted in ``STATS.limit_events``):

- ``preface_timeout``: no TLS handshake (uvloop's ``ssl_handshake_timeout``), then no
  connection preface / h2c Upgrade head in time (after the handshake, or after a ``101
  Switching Protocols``: a session that has received nothing yet): the socket is closed.
- ``header_timeout``: a header block begun and not finished in time (slowloris inside
  HTTP/2): GOAWAY(ENHANCE_YOUR_CALM).
- ``idle_timeout``: no open stream and no new request in time: GOAWAY(NO_ERROR). PINGs and
  other control frames do not keep a connection alive.
- ``request_body_timeout``: a request body that stops arriving (HEADERS without END_STREAM
  and no DATA, or DATA that stops) before anything was answered: the stream is reset with
  CANCEL, and a connection left with no stream gets GOAWAY(NO_ERROR) and is closed.
- ``send_timeout``: a stream parked on a zero stream window that long is reset with CANCEL:
  the peer broke no rule, we give up the response and free its file.
- HTTP/1.1 (``_check_http1``): a head unfinished after the preface timeout (the first
  request) or the header timeout (later ones) is closed without an answer, as nginx does;
  ``body_timeout``: a request body that stops arriving gets 408 and a close;
  ``keepalive_timeout``: an idle keep-alive connection is closed.
- ``stalled_connection``: output that does not move for the send timeout (a socket the peer
  never reads, or a connection window it never reopens) closes the connection: GOAWAY when it
  can still be written, an abort when the transport is the thing that is stuck.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection
from typing import Protocol

from h2stream.config import Config
from h2stream.core.exchange import ResetCode
from h2stream.core.limits import limit_event
from h2stream.core.session import Session
from h2stream.http1.connection import Http1Connection
from h2stream.io.sink import FLUSH_AT, SOLO_RUN

log = logging.getLogger("h2stream.timeouts")

CANCEL = ResetCode.CANCEL
ENHANCE_YOUR_CALM = ResetCode.ENHANCE_YOUR_CALM
# Sweep bounds: often enough that a 1 s timeout in a test fires promptly, and never more
# than once a second for the default timeouts (10 s and up).
MIN_INTERVAL = 0.05
MAX_INTERVAL = 1.0


def buffer_cap(config: Config) -> int:
    """Bytes a transport may hold before --max-connection-buffer aborts the connection: the
    configured value, but never less than what the server itself queues for a reader that
    reads (one run of a lone stream's frames, one frame the copy path finishes, and a flush
    of control frames and TLS records), so any accepted value still serves a well-behaved
    reader: only a peer that does not read meets the cap."""
    own = SOLO_RUN + 9 * (SOLO_RUN // 16384) + config.max_send_frame_size + FLUSH_AT
    return max(config.max_connection_buffer, own)


def sweep_interval(config: Config) -> float:
    timeouts = [
        t
        for t in (
            config.preface_timeout,
            config.header_timeout,
            config.idle_timeout,
            config.send_timeout,
            config.http1_keepalive_timeout,
            config.http1_body_timeout,
            config.request_body_timeout,
        )
        if t > 0
    ]
    if not timeouts:
        return MAX_INTERVAL  # still sweeps for the buffer cap and stuck closes
    return min(MAX_INTERVAL, max(MIN_INTERVAL, min(timeouts) / 4))


class Watched(Protocol):
    """A connection as the sweeper sees it (the asyncio protocol implements it)."""

    @property
    def session(self) -> Session | None: ...

    @property
    def watch(self) -> ConnectionWatch | None: ...

    @property
    def http1(self) -> Http1Connection | None: ...

    def shutdown(self) -> None: ...

    def schedule_pump(self) -> None: ...

    def abort(self) -> None: ...

    def output_queued(self) -> int: ...

    def output_unsent(self) -> int: ...


class ConnectionWatch:
    """The timeout marks of one connection; :meth:`check` runs once per sweep."""

    __slots__ = (
        "born",
        "closing_since",
        "config",
        "header_mark",
        "header_since",
        "idle_mark",
        "idle_since",
        "protocol",
        "stall_mark",
        "stall_since",
        "transport",
    )

    def __init__(self, protocol: Watched, transport: asyncio.Transport, config: Config) -> None:
        self.protocol = protocol
        self.transport = transport
        self.config = config
        self.born = time.monotonic()
        self.closing_since: float | None = None
        self.header_since: float | None = None
        self.header_mark = -1
        self.idle_since: float | None = None
        self.idle_mark = -1
        self.stall_since: float | None = None
        self.stall_mark: tuple[int, int, int, int] = (0, 0, 0, 0)

    def check(self, now: float) -> None:
        transport = self.transport
        config = self.config
        if transport.is_closing():
            # close() waits for the queue to drain; a peer that never reads would hold the
            # socket forever.
            if self.closing_since is None:
                self.closing_since = now
            elif config.send_timeout and now - self.closing_since >= config.send_timeout:
                limit_event("stalled_connection")
                transport.abort()
            return
        if self.protocol.output_queued() > buffer_cap(config):
            limit_event("connection_buffer")
            transport.abort()
            return
        session = self.protocol.session
        if session is None:
            http1 = self.protocol.http1
            if http1 is not None:
                self._check_http1(now, http1, config)
                return
            if config.preface_timeout and now - self.born >= config.preface_timeout:
                limit_event("preface_timeout")
                log.debug("no connection preface in %.1f s: closing", config.preface_timeout)
                transport.close()
            return
        if session.closed:
            return
        if session.awaiting_preface:
            # TLS handshake done (or 101 sent) and still nothing from the peer.
            if config.preface_timeout and now - self.born >= config.preface_timeout:
                limit_event("preface_timeout")
                log.debug("no connection preface in %.1f s: closing", config.preface_timeout)
                transport.close()
            return
        if config.request_body_timeout and session.streams and self._check_bodies(now, session):
            return
        highest = session.highest_stream_id
        if config.header_timeout and session.header_block_pending():
            if self.header_since is None or self.header_mark != highest:
                self.header_since, self.header_mark = now, highest
            elif now - self.header_since >= config.header_timeout:
                limit_event("header_timeout")
                log.debug("header block unfinished for %.1f s: GOAWAY", config.header_timeout)
                session.close_with(ENHANCE_YOUR_CALM)
                return
        else:
            self.header_since = None
        if session.streams or session.goaway_sent:
            self.idle_since = None
        elif self.idle_since is None or self.idle_mark != highest:
            self.idle_since, self.idle_mark = now, highest
        elif config.idle_timeout and now - self.idle_since >= config.idle_timeout:
            limit_event("idle_timeout")
            self.protocol.shutdown()
            return
        if config.send_timeout:
            self._check_send(now, session, config.send_timeout)

    def _check_bodies(self, now: float, session: Session) -> bool:
        """Reset streams whose request body stopped; True when the connection was closed."""
        stalled = session.stalled_bodies(now, self.config.request_body_timeout)
        if not stalled:
            return False
        for stream_id in stalled:
            limit_event("request_body_timeout")
            log.debug("stream %d: request body stopped: CANCEL", stream_id)
            session.reset(stream_id, CANCEL)
        if session.streams:
            self.protocol.schedule_pump()  # its turn flushes the RST_STREAM frames
            return False
        self.protocol.shutdown()  # nothing else alive here: GOAWAY, then close
        return True

    def _check_http1(self, now: float, conn: Http1Connection, config: Config) -> None:
        """HTTP/1.1: the head (slowloris, timed from its first byte, like nginx's
        client_header_timeout), a body that stops arriving, the keep-alive wait, and output
        that does not move."""
        if conn.closed:
            return
        received = conn.received
        if conn.head_pending or (not conn.requests and conn.idle):
            # A head that does not finish: closed without an answer, as nginx does. Before
            # the first request it is the connection's preface that never came.
            first = not conn.requests
            timeout = config.preface_timeout if first else config.header_timeout
            since = self.born if first else conn.head_since
            if timeout and now - since >= timeout:
                conn.timed_out(0, "preface_timeout" if first else "header_timeout")
            return
        if conn.idle:
            if self.idle_since is None or self.idle_mark != received:
                self.idle_since, self.idle_mark = now, received
            elif (
                config.http1_keepalive_timeout
                and now - self.idle_since >= config.http1_keepalive_timeout
            ):
                conn.timed_out(0, "keepalive_timeout")
            return
        self.idle_since = None
        if conn.body_pending and config.http1_body_timeout:
            if self.header_since is None or self.header_mark != received:
                self.header_since, self.header_mark = now, received
            elif now - self.header_since >= config.http1_body_timeout:
                conn.timed_out(408, "body_timeout")
                self.protocol.schedule_pump()
                return
        else:
            self.header_since = None
        if not config.send_timeout:
            return
        buffered = self.protocol.output_unsent()
        current = conn.current
        sent = current.bytes_sent if current is not None else 0
        if not buffered:
            self.stall_since = None
            return
        mark = (buffered, sent, received, 0)
        if self.stall_since is None or mark != self.stall_mark:
            self.stall_since, self.stall_mark = now, mark
        elif now - self.stall_since >= config.send_timeout:
            limit_event("stalled_connection")
            self.transport.abort()

    def _check_send(self, now: float, session: Session, timeout: float) -> None:
        streams = session.streams
        reset = False
        for stream in list(streams.values()):
            if stream.blocked and now - stream.blocked_since >= timeout:
                limit_event("send_timeout")
                log.debug("stream %d: zero window for %.1f s: CANCEL", stream.stream_id, timeout)
                session.reset(stream.stream_id, CANCEL)
                reset = True
        if reset:
            self.protocol.schedule_pump()  # its turn flushes the RST_STREAM frames
        buffered = self.protocol.output_unsent()
        window = session.connection_window
        if not buffered and (window > 0 or not streams):
            self.stall_since = None
            return
        mark = (buffered, window, len(streams), sum(s.bytes_sent for s in streams.values()))
        if self.stall_since is None or mark != self.stall_mark:
            self.stall_since, self.stall_mark = now, mark
        elif now - self.stall_since >= timeout:
            limit_event("stalled_connection")
            if buffered:
                log.debug("peer read nothing for %.1f s: aborting", timeout)
                self.transport.abort()
            else:
                log.debug("no connection window for %.1f s: GOAWAY", timeout)
                session.close_with(ENHANCE_YOUR_CALM)


class Sweeper:
    """One timer per server: checks every connection's watch once per interval."""

    def __init__(self, connections: Collection[Watched], config: Config) -> None:
        self._connections = connections
        self.interval = sweep_interval(config)
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_later(self.interval, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        now = time.monotonic()
        for protocol in list(self._connections):
            watch = protocol.watch
            if watch is None:
                continue
            try:
                watch.check(now)
            except Exception:
                log.exception("timeout check failed; closing the connection")
                protocol.abort()
        assert self._loop is not None
        self._handle = self._loop.call_later(self.interval, self._tick)
