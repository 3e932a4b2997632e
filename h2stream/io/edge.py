"""What happens to a connection before HTTP: its PROXY header, per-client admission, refusal.

:class:`Edge` is one server's policy and state (a worker's): whether its listeners expect a
PROXY header and from which networks, the per-client table (:mod:`h2stream.core.client_table`)
and the refusals in progress. The connection (:mod:`h2stream.io.protocol`) asks it.

Refusals, one mechanism for every limit that turns a connection away at accept
(``--max-connections``, ``--max-connections-per-client``, the per-client rate): the answer must
fit the protocol the client speaks, which the first bytes tell. A :class:`Refusal` takes the
transport over (``set_protocol``), skips a PROXY header if one is due, reads until it can tell
the HTTP/2 preface from an HTTP/1.x request (three bytes at most), answers SETTINGS +
GOAWAY(last stream 0) or ``503`` + ``Retry-After`` + ``Connection: close``, and closes. TLS
connections are told apart by ALPN at once. Waiting costs an fd, so it is bounded twice: at most
:data:`MAX_REFUSING` refusals wait at once per worker (more are closed at once, unanswered,
counted as "closed"), each for at most :data:`REFUSAL_READ_SECONDS`. Clients send their first
bytes with the connection (curl, browsers, h2load, HAProxy), so in practice a refusal is
answered in the same loop turn as its first read and nothing waits.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time

from h2stream.config import Config
from h2stream.core import proxy_header
from h2stream.core.client_table import CLIENT_RATE, ClientTable, client_key
from h2stream.core.exchange import Addresses
from h2stream.core.limits import http1_refusal, http2_refusal, limit_event
from h2stream.core.sniff import could_be_preface
from h2stream.core.stats import STATS

log = logging.getLogger("h2stream.edge")

# Refusals waiting for their first bytes at once, per worker: each holds an fd, which the fd
# budget (limits.set_fd_budget) does not count, so they live in its reserve of 64.
MAX_REFUSING = 32
# How long a refused connection may take to show which protocol it speaks.
REFUSAL_READ_SECONDS = 1.0
# What is left of the bytes after a PROXY header when the protocol is told: "PRI" or not.
_TELL_BYTES = 3


def count(table: dict[str, int], key: str) -> None:
    table[key] = table.get(key, 0) + 1


def peer_address(transport: asyncio.BaseTransport) -> str | None:
    """The IP address of the connection's peer; None for a Unix socket (no address)."""
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return None


def addresses_of(
    transport: asyncio.BaseTransport, header: proxy_header.ProxyHeader | None = None
) -> Addresses:
    """Both ends of a connection, with ports: a PROXY header's source and destination when it
    names them, else the socket's own peer and local address."""
    if header is not None and header.source is not None:
        server = (header.destination, header.destination_port) if header.destination else None
        return Addresses((header.source, header.source_port), server)
    peer = transport.get_extra_info("peername")
    local = transport.get_extra_info("sockname")
    client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) and len(peer) >= 2 else None
    if isinstance(local, tuple) and len(local) >= 2:
        return Addresses(client, (str(local[0]), int(local[1])))
    if isinstance(local, str) and local:  # a Unix socket's path
        return Addresses(client, (local, None))
    return Addresses(client, None)


class Edge:
    """One server's PROXY protocol policy, per-client table and refusals in progress."""

    def __init__(self, config: Config) -> None:
        # Whether any listener expects PROXY headers (each listener knows its own).
        self.proxy = config.proxy_protocol or any(b.proxy for b in config.binds)
        self.trusted = tuple(ipaddress.ip_network(n) for n in config.proxy_protocol_from)
        self.header_timeout = config.proxy_header_timeout
        self.header_limit = proxy_header.DEFAULT_LIMIT
        table = ClientTable(
            config.max_connections_per_client,
            config.new_connections_per_second_per_client,
            config.new_connections_burst_per_client,
            config.client_table_size,
        )
        self.clients: ClientTable | None = table if table.enabled else None
        self.refusing = 0

    def trusts(self, peer: str | None) -> bool:
        """May a PROXY header from ``peer`` be believed (Unix peers always may)?"""
        if not self.trusted or peer is None:
            return True
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        mapped = getattr(address, "ipv4_mapped", None)
        address = mapped if mapped is not None else address
        return any(address in network for network in self.trusted)

    def admit(self, client: str | None) -> tuple[str | None, str | None]:
        """Per-client limits for a new connection from ``client``: (the key to release when it
        closes, or None) and (the limit that refused it, or None)."""
        clients = self.clients
        if clients is None or client is None:
            return None, None
        key = client_key(client)
        refused = clients.admit(key, time.monotonic())
        return (None, refused) if refused else (key, None)

    def release(self, key: str) -> None:
        if self.clients is not None:
            self.clients.release(key)

    def retry_after(self, kind: str, client: str | None) -> int:
        """Whole seconds for the 503's Retry-After: when a token is due, or one."""
        if kind != CLIENT_RATE or self.clients is None or client is None:
            return 1
        wait = self.clients.retry_after(client_key(client), time.monotonic())
        return max(1, math.ceil(wait))

    def header_failed(self, reason: str) -> None:
        count(STATS.proxy_header_errors, reason)
        log.debug("PROXY header %s: closing", reason)


def refuse(
    edge: Edge,
    transport: asyncio.Transport,
    kind: str,
    *,
    client: str | None = None,
    header_due: bool = False,
    data: bytes = b"",
    alpn: str | None = None,
) -> None:
    """Turn ``transport`` away for limit ``kind`` (see the module docstring)."""
    limit_event(kind)
    retry_after = edge.retry_after(kind, client)
    if alpn in ("h2", "http/1.1"):
        _answer(transport, kind, alpn == "h2", retry_after)
        return
    if edge.refusing >= MAX_REFUSING:
        count(STATS.refusal_answers, "closed")
        transport.close()
        return
    refusal = Refusal(edge, transport, kind, retry_after, header_due)
    transport.set_protocol(refusal)
    if data:
        refusal.data_received(data)


def _answer(transport: asyncio.Transport, kind: str, http2: bool, retry_after: int) -> None:
    count(STATS.refusal_answers, "http2" if http2 else "http1")
    transport.write(http2_refusal(kind) if http2 else http1_refusal(retry_after))
    transport.close()


class Refusal(asyncio.Protocol):
    """A refused connection until its first bytes tell HTTP/2 from HTTP/1.x (see above)."""

    def __init__(
        self,
        edge: Edge,
        transport: asyncio.Transport,
        kind: str,
        retry_after: int,
        header_due: bool,
    ) -> None:
        self._edge = edge
        self._transport: asyncio.Transport | None = transport
        self._kind = kind
        self._retry_after = retry_after
        self._header_due = header_due
        self._buffer = b""
        edge.refusing += 1
        loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = loop.call_later(
            REFUSAL_READ_SECONDS, self._give_up
        )

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None:
            return
        buffered = self._buffer + data
        if self._header_due:
            try:
                header = proxy_header.parse(buffered, self._edge.header_limit)
            except proxy_header.ProxyHeaderError as exc:
                self._edge.header_failed(exc.reason)
                self._close("closed")
                return
            if header is None:
                self._buffer = buffered
                return
            self._header_due = False
            buffered = buffered[header.length :]
        if could_be_preface(buffered) and len(buffered) < _TELL_BYTES:
            self._buffer = buffered  # "", "P" or "PR": PUT and PATCH start with P too
            return
        self._finish()
        _answer(transport, self._kind, could_be_preface(buffered), self._retry_after)

    def eof_received(self) -> bool | None:
        self._close("closed")
        return False

    def _give_up(self) -> None:
        self._timer = None
        self._close("closed")

    def _close(self, answer: str) -> None:
        transport = self._transport
        if transport is None:
            return
        self._finish()
        count(STATS.refusal_answers, answer)
        transport.close()

    def _finish(self) -> None:
        """Leave the waiting state once: the slot and the timer go."""
        if self._transport is None:
            return
        self._transport = None
        self._buffer = b""
        self._edge.refusing -= 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._close("closed")  # a reset before anything could be answered
