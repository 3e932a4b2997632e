"""Listeners, signals and the graceful drain of one server process."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .config import Config
from .session import Handler, StreamObserver
from .tls import make_self_signed, server_context

if TYPE_CHECKING:
    from .protocol import H2Protocol

log = logging.getLogger("h2stream.server")


class StartupError(Exception):
    """A reason the server cannot start, worded for the operator."""


class Server:
    def __init__(self, config: Config, handler: Handler) -> None:
        self.config = config
        self.handler = handler
        self.connections: set[H2Protocol] = set()
        self.draining = False
        self._listeners: list[asyncio.Server] = []
        self._stopped: asyncio.Event | None = None
        self.addresses: list[tuple[str, str, int]] = []  # (scheme, host, port) once listening
        # Called as each stream ends (access log, metrics); None costs nothing.
        self.on_stream_end: StreamObserver | None = None

    def _ssl_context(self) -> ssl.SSLContext | None:
        config = self.config
        if config.self_signed and config.certfile is None:
            certfile, keyfile = make_self_signed()
            return server_context(certfile, keyfile)
        if config.certfile is not None:
            return server_context(config.certfile, config.keyfile or config.certfile)
        return None

    async def start(self, announce: Callable[[str], None] | None = None) -> None:
        from .protocol import H2Protocol

        loop = asyncio.get_running_loop()
        context = self._ssl_context()
        tls = context is not None
        self._stopped = asyncio.Event()
        for bind in self.config.binds:
            try:
                listener = await loop.create_server(
                    lambda: H2Protocol(self, self.handler, tls),
                    bind.host,
                    bind.port,
                    ssl=context,
                    reuse_address=True,
                    backlog=1024,
                )
            except OSError as exc:
                await self.close_listeners()
                raise StartupError(f"cannot listen on {bind}: {exc.strerror or exc}") from exc
            self._listeners.append(listener)
            for sock in listener.sockets:
                host, port = sock.getsockname()[:2]
                scheme = "https" if tls else "http"
                self.addresses.append((scheme, host, port))
                shown = f"[{host}]" if ":" in host else host
                kind = "h2 over TLS" if tls else "h2c"
                line = f"h2stream listening on {scheme}://{shown}:{port} ({kind})"
                (announce or _print_line)(line)

    async def close_listeners(self) -> None:
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()

    def request_stop(self) -> None:
        if self._stopped is not None:
            self._stopped.set()

    async def serve_until_stopped(self) -> None:
        assert self._stopped is not None
        await self._stopped.wait()
        await self.drain()

    async def drain(self) -> None:
        """Stop accepting, GOAWAY every connection, wait for in-flight streams (with a deadline)."""
        self.draining = True
        for listener in self._listeners:
            listener.close()
        for connection in list(self.connections):
            connection.shutdown()
        deadline = time.monotonic() + self.config.graceful_timeout
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for connection in list(self.connections):
            connection.abort()
        # Let the aborted transports run their connection_lost callbacks.
        await asyncio.sleep(0)
        self._listeners.clear()


def _print_line(line: str) -> None:
    print(line, flush=True)


def install_signal_handlers(server: Server) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.request_stop)


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise StartupError("--loop uvloop: uvloop is not installed") from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(config: Config, handler: Handler) -> int:
    """Serve until SIGTERM/SIGINT, then drain; return the process exit code."""
    loop = new_event_loop(config.loop)
    asyncio.set_event_loop(loop)
    server = Server(config, handler)

    async def serve() -> None:
        await server.start()
        install_signal_handlers(server)
        await server.serve_until_stopped()

    try:
        loop.run_until_complete(serve())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    sys.stdout.flush()
    return 0
