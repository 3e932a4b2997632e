"""What a connection needs from the server that accepted it, as an interface: the I/O layer
never imports the runtime that owns it."""

from __future__ import annotations

import weakref
from typing import Any, Protocol

from h2stream.config import Config
from h2stream.core.exchange import ExchangeObserver
from h2stream.io.edge import Edge


class IdleNotice(Protocol):
    def connection_closed(self) -> None:
        """A connection closed (the worker may have gone idle)."""


class ConnectionHost(Protocol):
    """The server side of every connection: its config, the live set, limits and state."""

    config: Config
    # The live connections (the protocol adds and discards itself).
    connections: set[Any]
    # Accepted, not yet made (a TLS handshake in progress); weak, since a failed handshake
    # never calls the protocol back.
    handshaking: weakref.WeakSet[Any]
    max_connections: int
    # PROXY headers expected, per-client limits, refusals in progress (edge.py).
    edge: Edge
    draining: bool
    on_stream_end: ExchangeObserver | None

    @property
    def idle_trim(self) -> IdleNotice: ...
