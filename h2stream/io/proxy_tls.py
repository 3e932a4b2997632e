"""PROXY protocol in front of TLS: an L4 balancer passing TLS through (HAProxy ``mode tcp``
with ``send-proxy-v2``, AWS NLB) puts the header before the ClientHello.

The TLS handshake is the event loop's, and it can only be given a socket whose bytes are all
still unread: uvloop reads a new connection's first segment before the protocol could pause
it, and that segment often holds the header and the ClientHello together. So such a listener
accepts by itself, takes each header off the raw socket without reading past it (peeked,
then consumed exactly to its end), and only then hands the socket to the loop with TLS
(``loop.connect_accepted_socket``). Bytes of a header still incomplete are consumed as they
come (all of them are header), so a slow sender costs one wakeup per segment, never a busy
loop on bytes left unread; the header timeout and a cap on connections waiting bound the rest.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import ssl
from collections.abc import Callable

from h2stream.core import proxy_header
from h2stream.core.proxy_header import ProxyHeader
from h2stream.core.stats import STATS
from h2stream.io.edge import Edge, count

log = logging.getLogger("h2stream.edge")

# (header, None) once read; (None, reason) when the connection cannot be served.
HeaderDone = Callable[[ProxyHeader | None, str | None], None]
# The protocol for a connection whose header named ``client`` (None: a LOCAL health check).
ProtocolFor = Callable[[ProxyHeader], asyncio.Protocol]
# Connections accepted and still sending their header, per listener; past it, new ones are
# closed at once (a flood of silent connections cannot pile up fds).
MAX_WAITING = 1024
# Connections taken per wakeup of the listening socket, so a burst cannot hold the loop.
ACCEPTS_PER_WAKEUP = 64


class HeaderReader:
    """Reads one PROXY header off ``sock`` (non-blocking, owned by the caller), no further."""

    __slots__ = ("_buffered", "_done", "_limit", "_loop", "_sock")

    def __init__(self, sock: socket.socket, limit: int, done: HeaderDone) -> None:
        self._sock = sock
        self._limit = limit
        self._done: HeaderDone | None = done
        self._buffered = b""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        sock = self._sock
        try:
            peeked = sock.recv(max(1, self._limit - len(self._buffered)), socket.MSG_PEEK)
        except BlockingIOError:
            return
        except OSError:
            peeked = b""
        if not peeked:
            self._finish(None, "truncated" if self._buffered else "empty")
            return
        try:
            header = proxy_header.parse(self._buffered + peeked, self._limit)
        except proxy_header.ProxyHeaderError as exc:
            self._finish(None, exc.reason)
            return
        try:
            if header is None:
                self._buffered += sock.recv(len(peeked))  # all header so far: consume it
                return
            rest = header.length - len(self._buffered)
            taken = sock.recv(rest) if rest > 0 else b""
        except OSError:
            self._finish(None, "truncated")
            return
        self._finish(header, None if len(taken) == rest else "truncated")

    def _finish(self, header: ProxyHeader | None, error: str | None) -> None:
        done = self._done
        self.cancel()
        if done is not None:
            done(header if error is None else None, error)

    def cancel(self) -> None:
        """Stop reading (timeout, close); ``done`` is not called. The socket stays open."""
        if self._done is None:
            return
        self._done = None
        self._loop.remove_reader(self._sock.fileno())


class ProxyTlsListener:
    """Accepts on ``sock``; each connection's PROXY header read, TLS starts with ``context``
    and ``protocol_for(header)`` serves it. Closed like an ``asyncio.Server``."""

    def __init__(
        self,
        sock: socket.socket,
        context: ssl.SSLContext,
        edge: Edge,
        protocol_for: ProtocolFor,
        handshake_timeout: float | None,
    ) -> None:
        self.sockets = [sock]
        self._sock = sock
        self._context = context
        self._edge = edge
        self._protocol_for = protocol_for
        self._handshake_timeout = handshake_timeout
        self._waiting: dict[socket.socket, tuple[HeaderReader, asyncio.TimerHandle]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()
        self._closed = False
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: this one is lost, not the listener
                log.warning("accept failed: %s", exc)
                return
            peer = _peer(conn)
            if not self._edge.trusts(peer):
                self._edge.header_failed("untrusted")
                conn.close()
                continue
            if len(self._waiting) >= MAX_WAITING:
                count(STATS.refusal_answers, "closed")
                conn.close()
                continue
            conn.setblocking(False)
            reader = HeaderReader(
                conn, self._edge.header_limit, functools.partial(self._header, conn)
            )
            timer = self._loop.call_later(self._edge.header_timeout, self._late, conn)
            self._waiting[conn] = (reader, timer)

    def _late(self, conn: socket.socket) -> None:
        waiting = self._waiting.pop(conn, None)
        if waiting is not None:
            waiting[0].cancel()
            self._edge.header_failed("timeout")
            conn.close()

    def _header(self, conn: socket.socket, header: ProxyHeader | None, error: str | None) -> None:
        waiting = self._waiting.pop(conn, None)
        if waiting is not None:
            waiting[1].cancel()
        if header is None:
            self._edge.header_failed(error or "malformed")
            conn.close()
            return
        count(STATS.proxy_headers, "local" if header.local else f"v{header.version}")
        task = asyncio.ensure_future(self._start_tls(conn, header))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start_tls(self, conn: socket.socket, header: ProxyHeader) -> None:
        try:
            await self._loop.connect_accepted_socket(
                lambda: self._protocol_for(header),
                conn,
                ssl=self._context,
                ssl_handshake_timeout=self._handshake_timeout,
            )
        except Exception as exc:  # a failed handshake, a timeout, a reset: this one only
            log.debug("TLS after the PROXY header failed: %s", exc)
            conn.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        for conn, (reader, timer) in list(self._waiting.items()):
            reader.cancel()
            timer.cancel()
            conn.close()
        self._waiting.clear()


def _peer(conn: socket.socket) -> str | None:
    try:
        address = conn.getpeername()
    except OSError:
        return None
    return address[0] if isinstance(address, tuple) else None
