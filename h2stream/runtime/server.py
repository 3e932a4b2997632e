"""Listeners, signals and the graceful drain of one server process."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import ssl
import sys
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from h2stream.config import Bind, Config, proxied
from h2stream.core.exchange import ExchangeObserver, Handler
from h2stream.core.limits import set_fd_budget
from h2stream.core.proxy_header import ProxyHeader
from h2stream.handlers.serving import HEALTH
from h2stream.io.edge import Edge
from h2stream.io.protocol import H2Protocol
from h2stream.io.proxy_tls import ProxyTlsListener
from h2stream.io.timeouts import Sweeper
from h2stream.observe.wiring import MetricsListenError, Observability
from h2stream.runtime import gcpolicy
from h2stream.runtime.context import WorkerContext
from h2stream.runtime.memory import IdleTrim
from h2stream.runtime.systemd import ActivationError, describe, listen_sockets, sd_notify
from h2stream.runtime.tls import TLSError, alpn_protocols, make_self_signed, server_context
from h2stream.runtime.unixsock import UnixSocketFile

log = logging.getLogger("h2stream.server")

# How long a draining server waits for PING ACKs before naming the last stream regardless.
SHUTDOWN_NOTICE_SECONDS = 1.0


class StartupError(Exception):
    """A reason the server cannot start, worded for the operator."""


class Listener(Protocol):
    """An asyncio server, or a ProxyTlsListener: what the server keeps of each listener."""

    @property
    def sockets(self) -> Sequence[Any]: ...

    def close(self) -> None: ...


class AppLifespan(Protocol):
    """An application's startup and shutdown (an ASGI handler's ``lifespan``): startup runs
    before the server listens, shutdown once in-flight requests have finished in the drain."""

    async def startup(self) -> None: ...

    async def shutdown(self) -> None: ...


class Server:
    def __init__(
        self, config: Config, handler: Handler, context: WorkerContext | None = None
    ) -> None:
        """``context``: the worker's pools and budgets, when the handler was built to share
        them (worker.py: its compressed responses borrow the context's zstd contexts);
        otherwise the server makes its own."""
        self.config = config
        self.handler = handler
        self.context = context if context is not None else WorkerContext(config)
        self.connections: set[H2Protocol] = set()
        # Accepted connections still in their TLS handshake: the drain waits for them too.
        self.handshaking: weakref.WeakSet[Any] = weakref.WeakSet()
        self.draining = False
        self._listeners: list[Listener] = []
        # Set by SIGTERM/SIGINT, even one that arrives before the listeners exist.
        self._stopped = asyncio.Event()
        # Set by a second SIGTERM/SIGINT during the drain: connections are cut at once.
        self._forced = False
        self.addresses: list[tuple[str, str, int]] = []  # (scheme, host, port) once listening
        # Called as each stream ends (access log, metrics); None costs nothing.
        self.on_stream_end: ExchangeObserver | None = None
        # Access log, metrics observer and listener (observe.py): made in start() when
        # --access-log or --metrics-bind is given, unless set before start().
        self.observability: Observability | None = None
        # Connections this worker holds at once, so accept() never meets EMFILE:
        # --max-connections within the fd limit; set in start(), which may raise the soft
        # RLIMIT_NOFILE first.
        self.max_connections = 1 << 30
        # PROXY headers, per-client limits and refusals (io/edge.py): per worker.
        self.edge = Edge(config)
        # --bind unix: sockets this process made (removed at the end of the drain).
        self._unix_files: list[UnixSocketFile] = []
        # The one timer that checks every connection's timeouts (timeouts.py).
        self._sweeper: Sweeper | None = None
        # Hands the heap's free pages back once the last connection has gone (memory.py).
        self.idle_trim = IdleTrim(self.connections, self.context)
        # The handler's application lifespan, if it has one (ASGI apps).
        self.lifespan: AppLifespan | None = getattr(handler, "lifespan", None)
        # The TLS context new handshakes use: the listeners' own, until SIGHUP reloads the
        # certificate (see reload()).
        self._tls_current: ssl.SSLContext | None = None

    def _ssl_context(self) -> ssl.SSLContext | None:
        config = self.config
        if config.self_signed and config.certfile is None:
            certfile, keyfile = make_self_signed()
            return server_context(certfile, keyfile, alpn_protocols(config.http))
        if config.certfile is not None:
            keyfile = config.keyfile or config.certfile
            context = server_context(config.certfile, keyfile, alpn_protocols(config.http))
            self._tls_current = context
            # A listener's context is fixed when it is made; a reloaded certificate reaches
            # new handshakes by switching their context as the ClientHello arrives (OpenSSL
            # calls this with or without SNI), connections already open keep theirs.
            context.sni_callback = self._use_current_certificate
            return context
        return None

    def _use_current_certificate(
        self, connection: ssl.SSLObject, _name: str | None, listener: ssl.SSLContext
    ) -> None:
        current = self._tls_current
        if current is not None and current is not listener:
            connection.context = current

    def reload(self) -> str:
        """SIGHUP to a single process: renew what can change under open connections, for the
        new ones: the TLS certificate (a renewal) and the access log file (a rotation). Other
        options need a restart (``--supervise`` reloads them all without one). Returns what
        was done, for the log."""
        done = []
        config = self.config
        if self._tls_current is not None and config.certfile is not None:
            keyfile = config.keyfile or config.certfile
            try:
                fresh = server_context(config.certfile, keyfile, alpn_protocols(config.http))
            except TLSError as exc:
                log.error("SIGHUP: the certificate stays as it was: %s", exc)
            else:
                self._tls_current = fresh
                done.append("reloaded the TLS certificate for new connections")
        access_log = self.observability.access_log if self.observability else None
        if access_log is not None and config.access_log != "-":
            try:
                access_log.reopen()
            except OSError as exc:
                log.error("SIGHUP: cannot reopen the access log: %s", exc)
            else:
                done.append("reopened the access log")
        if not done:
            return (
                "SIGHUP ignored: a single process reloads only its TLS certificate and access "
                "log; run with --supervise to reload the config without a restart"
            )
        return f"SIGHUP: {' and '.join(done)}; other options take a restart (or --supervise)"

    async def start(
        self,
        announce: Callable[[str], None] | None = None,
        sockets: Sequence[socket.socket] = (),
        names: Sequence[str] = (),
        proxies: Sequence[bool] = (),
    ) -> None:
        """Listen on ``config.binds``, or on ``sockets`` already bound and listening (a worker
        process accepts on the SO_REUSEPORT sockets its supervisor made: see supervisor.py;
        systemd's, named ``names``, under socket activation); ``proxies`` marks those that
        expect PROXY headers (otherwise --proxy-protocol decides for them)."""
        loop = asyncio.get_running_loop()
        context = self._ssl_context()
        tls = context is not None
        config = self.config
        # gRPC health checks answer SERVING from here until the drain starts.
        HEALTH.set_serving(True)
        if self.lifespan is not None:
            # Before listening: no request may reach an app whose startup has not finished.
            try:
                await self.lifespan.startup()
            except Exception as exc:
                raise StartupError(str(exc)) from exc
        if self.observability is None and (config.access_log or config.metrics_bind):
            self.observability = Observability(self)
        if self.observability is not None:
            try:
                self.observability.install()  # before any connection: sessions copy it
            except OSError as exc:  # the access log cannot be opened
                raise StartupError(
                    f"access log {config.access_log!r}: {exc.strerror or exc}"
                ) from exc

        def plain() -> H2Protocol:
            made = H2Protocol(self, self.handler, tls, self.context)
            self.handshaking.add(made)
            return made

        def proxy_first() -> H2Protocol:
            made = H2Protocol(self, self.handler, tls, self.context, proxy=True)
            self.handshaking.add(made)
            return made

        def after_header(header: ProxyHeader) -> H2Protocol:
            made = H2Protocol(self, self.handler, tls, self.context, header)
            self.handshaking.add(made)
            return made

        # The fd budget: connections per worker (and streams, enforced by the session).
        self.max_connections = set_fd_budget(config, self.context.budget).connections
        # Slowloris during the TLS handshake: it counts against the preface timeout.
        handshake = (config.preface_timeout or None) if context is not None else None

        async def listen(
            sock: socket.socket | None, proxy: bool, bind: Bind | None = None
        ) -> Listener:
            if sock is None:
                assert bind is not None
                sock = _numeric_listener(bind)
            if context is not None and proxy:
                # The PROXY header comes before the TLS handshake (proxy_tls.py).
                if sock is None:
                    assert bind is not None
                    family = socket.AF_INET6 if ":" in bind.host else socket.AF_INET
                    sock = socket.create_server((bind.host, bind.port), family=family, backlog=1024)
                return ProxyTlsListener(sock, context, self.edge, after_header, handshake)
            protocol = proxy_first if proxy else plain
            if sock is not None:
                return await loop.create_server(
                    protocol, sock=sock, ssl=context, backlog=1024,
                    ssl_handshake_timeout=handshake,
                )  # fmt: skip
            assert bind is not None
            return await loop.create_server(
                protocol, bind.host, bind.port, ssl=context, reuse_address=True, backlog=1024,
                ssl_handshake_timeout=handshake,
            )  # fmt: skip

        proxy_flags: list[bool] = []
        for index, inherited in enumerate(sockets):
            proxy = proxies[index] if index < len(proxies) else config.proxy_protocol
            self._listeners.append(await listen(inherited, proxy))
            proxy_flags.append(proxy)
        for bind in () if sockets else self.config.binds:
            proxy = proxied(config, bind)
            try:
                if bind.path is not None:
                    unix = UnixSocketFile(
                        bind.path, config.unix_socket_mode, config.unix_socket_owner
                    )
                    self._unix_files.append(unix)
                    listener = await listen(unix.sock, proxy)
                else:
                    listener = await listen(None, proxy, bind)
            except OSError as exc:
                await self.close_listeners()
                raise StartupError(f"cannot listen on {bind}: {exc.strerror or exc}") from exc
            self._listeners.append(listener)
            proxy_flags.append(proxy)
        scheme = "https" if tls else "http"
        for index, listener in enumerate(self._listeners):
            kind = _protocols_served(config.http, tls)
            kind += "; PROXY protocol" if proxy_flags[index] else ""
            name = f"; systemd socket {names[index]!r}" if index < len(names) else ""
            for sock in listener.sockets:
                if sock.family == socket.AF_UNIX:
                    self.addresses.append(("unix", describe(sock)[5:], 0))
                    shown = describe(sock)
                else:
                    host, port = sock.getsockname()[:2]
                    self.addresses.append((scheme, host, port))
                    shown = f"{scheme}://{describe(sock)}"
                (announce or _print_line)(f"h2stream listening on {shown} ({kind}{name})")
        if self.observability is not None:
            try:
                await self.observability.start_listener(announce or _print_line)
            except MetricsListenError as exc:
                raise StartupError(str(exc)) from exc
        self._sweeper = Sweeper(self.connections, config)
        self._sweeper.start()

    async def close_listeners(self) -> None:
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()
        self._remove_unix_files()

    def _remove_unix_files(self) -> None:
        for unix in self._unix_files:
            unix.close()
        self._unix_files.clear()

    async def stopped(self) -> None:
        """Until SIGTERM/SIGINT (request_stop) asks for the drain."""
        await self._stopped.wait()

    def request_stop(self) -> None:
        self._stopped.set()

    def stop_now(self) -> None:
        """End the drain at once: every connection still open is aborted."""
        self._forced = True
        self._stopped.set()

    async def serve_until_stopped(self) -> None:
        await self._stopped.wait()
        await self.drain()

    async def drain(self) -> None:
        """Stop accepting, GOAWAY every connection, wait for in-flight streams (with a deadline)."""
        self.draining = True
        # gRPC health checks answer NOT_SERVING while in-flight streams finish.
        HEALTH.set_serving(False)
        for listener in self._listeners:
            listener.close()
        deadline = time.monotonic() + self.config.graceful_timeout
        # A connection accepted just before the listener closed may still be in its TLS
        # handshake: it is not among the connections yet, and ending the drain now would cut
        # it (the client sees EOF mid-handshake). The handshake timeout bounds the wait.
        handshakes = min(deadline, time.monotonic() + (self.config.preface_timeout or 10.0))
        while self.handshaking and time.monotonic() < handshakes and not self._forced:
            await asyncio.sleep(0.01)
        # Two GOAWAYs (Session.announce_shutdown): the last stream id is named only once the
        # peer's PING ACK shows it saw the first, so no request crossing it is refused. Peers
        # that have not answered within the notice (or are still sniffing) get it then.
        for connection in list(self.connections):
            connection.announce_shutdown()
        notice = min(time.monotonic() + SHUTDOWN_NOTICE_SECONDS, deadline)
        while (
            time.monotonic() < notice
            and not self._forced
            and any(_awaits_notice(c) for c in self.connections)
        ):
            await asyncio.sleep(0.01)
        for connection in list(self.connections):
            connection.shutdown()
        while self.connections and time.monotonic() < deadline and not self._forced:
            await asyncio.sleep(0.05)
        for connection in list(self.connections):
            connection.abort()
        # Let the aborted transports run their connection_lost callbacks.
        await asyncio.sleep(0)
        if self.lifespan is not None:
            # After the in-flight requests: the app's resources outlive every request.
            await self.lifespan.shutdown()
        self._listeners.clear()
        self._remove_unix_files()
        if self._sweeper is not None:
            self._sweeper.stop()
        self.idle_trim.stop()
        if self.observability is not None:
            # Last: /readyz said 503 through the drain, and the final log lines are written.
            await self.observability.close()


def _numeric_listener(bind: Bind) -> socket.socket | None:
    """A socket listening on ``bind`` when its host is a numeric address (SO_REUSEADDR, and
    IPV6_V6ONLY for IPv6, as the loop sets them); None for a name, which the loop resolves.
    The loop's resolver encodes every host with the idna codec, which loads unicodedata:
    0.4 MiB of a worker at rest that a numeric address never needed (README "Memory")."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, bind.host)
        except OSError:
            continue
        return socket.create_server((bind.host, bind.port), family=family, backlog=1024)
    return None


def _protocols_served(http: str, tls: bool) -> str:
    """What a listener speaks, for its "listening on" line: "HTTP/1.1, h2c", "h2 over TLS"..."""
    versions = http.split(",")
    names = [
        name for v, name in (("1.1", "HTTP/1.1"), ("2", "h2" if tls else "h2c")) if v in versions
    ]
    return ", ".join(names) + (" over TLS" if tls else "")


def _awaits_notice(connection: H2Protocol) -> bool:
    """An HTTP/2 connection (or one still sniffing) whose peer has not yet acknowledged the
    first GOAWAY; HTTP/1.1 connections need no notice (they close after their response)."""
    if connection.http1 is not None:
        return False
    session = connection.session
    return session is None or not session.goaway_sent


def _print_line(line: str) -> None:
    print(line, flush=True)


def install_signal_handlers(server: Server) -> None:
    """The first SIGTERM/SIGINT drains and says so (a drain may take --graceful-timeout
    seconds, silent otherwise); a second one stops at once. SIGHUP reloads what a single
    process can (:meth:`Server.reload`) and never stops it."""
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if server.draining or server._stopped.is_set():
            print("h2stream: stopping now", file=sys.stderr, flush=True)
            server.stop_now()
            return
        count = len(server.connections)
        print(
            f"h2stream: draining {count} connection{'' if count == 1 else 's'} "
            f"(up to {server.config.graceful_timeout:g} s), Ctrl-C again to stop now",
            file=sys.stderr,
            flush=True,
        )
        server.request_stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)

    def on_hangup() -> None:
        # Left to its default, SIGHUP would kill the process and cut every download.
        log.warning("%s", server.reload())

    loop.add_signal_handler(signal.SIGHUP, on_hangup)


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


def run(config: Config, handler: Handler, context: WorkerContext | None = None) -> int:
    """Serve until SIGTERM/SIGINT, then drain; return the process exit code. ``context``: as
    for :class:`Server`."""
    loop = new_event_loop(config.loop)
    asyncio.set_event_loop(loop)
    server = Server(config, handler, context)

    async def serve() -> None:
        # Handlers first: a SIGTERM right after the listening line must drain, not kill.
        install_signal_handlers(server)
        # systemd socket activation: its sockets instead of --bind (systemd.py).
        try:
            activated = listen_sockets()
        except ActivationError as exc:
            raise StartupError(str(exc)) from exc
        await server.start(sockets=[a.sock for a in activated], names=[a.name for a in activated])
        gcpolicy.tune(config.gc_threshold)
        sd_notify(f"READY=1\nMAINPID={os.getpid()}")
        await server.stopped()
        sd_notify("STOPPING=1")
        await server.drain()

    try:
        loop.run_until_complete(serve())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    sys.stdout.flush()
    return 0
