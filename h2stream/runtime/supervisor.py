"""The supervisor: worker processes on shared ports, restarts, signals, zero-downtime reloads.

``h2stream serve --workers N`` (N > 1, or ``--supervise``) runs this parent instead of serving
itself. It binds every ``--bind`` address once per worker *slot*, each socket with
SO_REUSEPORT on one port (port 0 is resolved once, by the first socket), so the kernel spreads
new connections over the workers. Worker k of every generation accepts on slot k's sockets,
which the supervisor keeps open: a reload or a restart never closes a listening socket, so no
connection waiting in a socket's accept queue is lost (closing one member of a SO_REUSEPORT
group resets the connections queued on it unless ``net.ipv4.tcp_migrate_req`` is set).
A ``--bind unix:`` socket is made once and shared by every worker (SO_REUSEPORT does nothing
for Unix sockets); under systemd socket activation (``LISTEN_FDS``, systemd.py) nothing is
bound at all: every worker accepts on the sockets systemd passed.

Workers are fresh ``python -m h2stream.runtime.worker`` interpreters (not forks), so a reload
re-reads the code as well as the config file and the certificates.

Signals:
- SIGTERM/SIGINT: every worker drains (GOAWAY, in-flight streams finish within
  ``--graceful-timeout``); the supervisor closes its copies of the listening sockets, waits for
  the workers (with a deadline, then SIGKILL), removes the pid file and exits 0.
- SIGHUP: re-read the config (a bad one is logged and changes nothing), start a new generation
  of workers, wait until each accepts, then SIGTERM the old generation, which drains.
- A worker that dies is restarted into its slot and logged; a crash loop backs off
  (0.5 s doubling to 10 s) so it cannot spin.

With ``--metrics-bind`` the supervisor serves ``/metrics`` (the sum over workers: each
publishes a snapshot file, see metrics.py; a worker that exits is folded into ``retired.json``
so counters never go backwards), ``/healthz``, and ``/readyz``, which answers 503 once a stop
begins. Under systemd (``Type=notify``) it reports READY, RELOADING and STOPPING.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from h2stream.config import Bind, Config, ConfigError, load_config, proxied
from h2stream.runtime.pidfile import PidFileError, remove_pid_file, write_pid_file
from h2stream.runtime.server import StartupError
from h2stream.runtime.systemd import ActivatedSocket, ActivationError, describe, listen_sockets
from h2stream.runtime.systemd import sd_notify as sd_notify
from h2stream.runtime.tls import TLSError, make_self_signed, server_context
from h2stream.runtime.unixsock import UnixSocketFile
from h2stream.runtime.worker import READY, encode_config

if TYPE_CHECKING:
    from h2stream.observe.metrics_server import MetricsServer

log = logging.getLogger("h2stream.supervisor")

BACKLOG = 1024
# A worker that lived this long before dying is restarted at once; sooner is a crash loop.
HEALTHY_SECONDS = 10.0
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 10.0
# Beyond its own --graceful-timeout, how long a stopping worker may take before SIGKILL.
EXIT_GRACE = 5.0


@dataclass(frozen=True)
class ConfigSource:
    """How the config was given, so SIGHUP can read it again: CLI values and the file."""

    cli: Mapping[str, Any]
    config_file: str | None
    serve_root: bool

    def load(self) -> Config:
        return load_config(self.cli, self.config_file)


class Listener:
    """One address of one ``--bind``: a SO_REUSEPORT listening socket per worker slot."""

    def __init__(self, bind: Bind, family: int, address: tuple[Any, ...]) -> None:
        self.bind = bind
        self.family = family
        self.address = address
        self.sockets: list[socket.socket] = []
        self.port = address[1]

    def _open(self, port: int) -> socket.socket:
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if self.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((self.address[0], port, *self.address[2:]))
            sock.listen(BACKLOG)
        except OSError:
            sock.close()
            raise
        return sock

    def claim(self) -> None:
        """Take the port, or fail if anything listens on it.

        A SO_REUSEPORT bind would silently join another server's group on the same port (a
        second h2stream, say) and share its traffic: a plain bind first proves the port free,
        and resolves port 0 to the one port every slot then shares.
        """
        probe = socket.socket(self.family, socket.SOCK_STREAM)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            probe.bind(self.address)
            self.port = probe.getsockname()[1]
            first = self._open(self.port)  # joins nothing: the probe still holds the port
        finally:
            probe.close()
        self.sockets.append(first)

    def ensure(self, slots: int) -> None:
        while len(self.sockets) < slots:
            self.sockets.append(self._open(self.port))

    def trim(self, slots: int) -> None:
        for sock in self.sockets[slots:]:
            sock.close()
        del self.sockets[slots:]

    def close(self) -> None:
        self.trim(0)

    def url(self, tls: bool) -> str:
        host = self.address[0]
        shown = f"[{host}]" if ":" in host else host
        return f"{'https' if tls else 'http'}://{shown}:{self.port}"

    def fd(self, slot: int) -> int:
        return self.sockets[slot].fileno()


class SharedListener:
    """One socket that every worker slot accepts on: a ``--bind unix:`` socket (SO_REUSEPORT
    spreads nothing there) made once here, or one systemd passed (never bound again)."""

    def __init__(
        self, bind: Bind | None, config: Config, activated: ActivatedSocket | None = None
    ) -> None:
        self.bind = bind
        self._config = config
        self._file: UnixSocketFile | None = None
        self._sock = activated.sock if activated is not None else None
        self.name = activated.name if activated is not None else None

    def claim(self) -> None:
        if self._sock is None and self.bind is not None and self.bind.path is not None:
            config = self._config
            self._file = UnixSocketFile(
                self.bind.path, config.unix_socket_mode, config.unix_socket_owner
            )
            self._sock = self._file.sock

    def ensure(self, slots: int) -> None:
        pass  # one socket for every slot

    def trim(self, slots: int) -> None:
        if not slots:
            self.close()

    def close(self) -> None:
        """Close it; a Unix socket's file goes too (UnixSocketFile.close)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        elif self._sock is not None:
            self._sock.close()
        self._sock = None

    def url(self, tls: bool) -> str:
        assert self._sock is not None
        shown = describe(self._sock)
        if self._sock.family != socket.AF_UNIX:
            shown = f"{'https' if tls else 'http'}://{shown}"
        return shown + (f" (systemd socket {self.name!r})" if self.name else "")

    def fd(self, slot: int) -> int:
        assert self._sock is not None
        return self._sock.fileno()


AnyListener = Listener | SharedListener


def resolve(bind: Bind, config: Config) -> list[AnyListener]:
    if bind.path is not None:
        return [SharedListener(bind, config)]
    try:
        infos = socket.getaddrinfo(
            bind.host or None, bind.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen on {bind}: {exc.strerror}") from exc
    listeners: list[AnyListener] = []
    seen: set[tuple[int, tuple[Any, ...]]] = set()
    for family, _, _, _, address in infos:
        if (family, address) not in seen and family in (socket.AF_INET, socket.AF_INET6):
            seen.add((family, address))
            listeners.append(Listener(bind, family, address))
    return listeners


@dataclass(eq=False)
class Worker:
    slot: int
    proc: subprocess.Popen[bytes]
    pidfd: int
    status_fd: int
    started_at: float
    ready: asyncio.Future[bool]  # True once it accepts; False if it exited first
    exited: asyncio.Future[int]  # the exit status (negative: killed by that signal)
    retiring: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with status {code}"


@dataclass(eq=False)
class Supervisor:
    source: ConfigSource
    config: Config
    listeners: dict[Bind, list[AnyListener]] = field(default_factory=dict)
    # systemd socket activation: these instead of --bind, for the supervisor's whole life.
    activated: list[AnyListener] = field(default_factory=list)
    slots: list[Worker] = field(default_factory=list)  # the serving generation, by slot
    workers: set[Worker] = field(default_factory=set)  # every live worker, serving or retiring
    stopping: bool = False
    _backoff: dict[int, float] = field(default_factory=dict)
    _restarts: set[asyncio.TimerHandle] = field(default_factory=set)
    _reload_task: asyncio.Task[None] | None = None
    _reload_again: bool = False
    _self_signed: tuple[str, str] | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _serving: bool = False  # the first generation accepts: /readyz may say 200
    _metrics: MetricsServer | None = None
    _snapshot_dir: str | None = None

    def __post_init__(self) -> None:
        # The workers' lifeline: they hold the read end, only we hold the write end.
        self._lifeline_r, self._lifeline_w = os.pipe()

    # -- listeners -------------------------------------------------------------------------

    def _open_listeners(self, config: Config) -> None:
        """Bind what ``config`` adds (new binds, more slots); existing sockets stay as they are."""
        if self.activated:
            return
        for bind in config.binds:
            if bind not in self.listeners:
                fresh = resolve(bind, config)
                try:
                    for listener in fresh:
                        listener.claim()
                except OSError as exc:
                    for listener in fresh:
                        listener.close()
                    raise StartupError(f"cannot listen on {bind}: {exc.strerror or exc}") from exc
                self.listeners[bind] = fresh
            for listener in self.listeners[bind]:
                try:
                    listener.ensure(config.workers)
                except OSError as exc:
                    raise StartupError(f"cannot listen on {bind}: {exc.strerror or exc}") from exc

    def _close_unused_listeners(self, config: Config) -> None:
        for bind in list(self.listeners):
            if bind not in config.binds:
                for listener in self.listeners.pop(bind):
                    listener.close()
            else:
                for listener in self.listeners[bind]:
                    listener.trim(config.workers)

    def _close_listeners(self) -> None:
        for listeners in [*self.listeners.values(), self.activated]:
            for listener in listeners:
                listener.close()
        self.listeners.clear()
        self.activated.clear()

    def _listening(self, config: Config) -> list[AnyListener]:
        if self.activated:
            return self.activated
        return [listener for bind in config.binds for listener in self.listeners[bind]]

    def _slot_fds(self, config: Config, slot: int) -> list[int]:
        return [listener.fd(slot) for listener in self._listening(config)]

    def _listen_fds_arg(self, config: Config, fds: list[int]) -> str:
        """The worker's --listen-fds: each fd, marked ``p`` if its listener expects PROXY
        headers (a worker cannot tell its inherited sockets' binds apart)."""
        marks = ["p" if proxied(config, lst.bind) else "" for lst in self._listening(config)]
        return ",".join(f"{fd}{mark}" for fd, mark in zip(fds, marks, strict=True))

    # -- workers ---------------------------------------------------------------------------

    def _worker_config(self, config: Config) -> Config:
        """The config a worker gets: a self-signed certificate is made once, here, for all."""
        if config.self_signed and config.certfile is None:
            if self._self_signed is None:
                self._self_signed = make_self_signed()
            certfile, keyfile = self._self_signed
            config = config.replace(self_signed=False, certfile=certfile, keyfile=keyfile)
        if config.certfile is not None:
            # Fail here, in one readable line, rather than in every worker.
            server_context(config.certfile, config.keyfile or config.certfile)
        return config

    def _spawn(self, slot: int, config: Config) -> Worker:
        loop = asyncio.get_running_loop()
        fds = self._slot_fds(config, slot)
        encoded = encode_config(self._worker_config(config))
        status_r, status_w = os.pipe()
        command = [
            sys.executable,
            "-m",
            "h2stream.runtime.worker",
            "--listen-fds",
            self._listen_fds_arg(config, fds),
            "--status-fd",
            str(status_w),
            "--lifeline-fd",
            str(self._lifeline_r),
            *(["--serve-root"] if self.source.serve_root else []),
            *(["--snapshot-dir", self._snapshot_dir] if self._snapshot_dir else []),
            encoded,
        ]
        try:
            proc = subprocess.Popen(
                command, pass_fds=(*fds, status_w, self._lifeline_r), stdin=subprocess.DEVNULL
            )
        except OSError:
            os.close(status_r)
            raise
        finally:
            os.close(status_w)
        worker = Worker(
            slot=slot,
            proc=proc,
            pidfd=os.pidfd_open(proc.pid),
            status_fd=status_r,
            started_at=time.monotonic(),
            ready=loop.create_future(),
            exited=loop.create_future(),
        )
        self.workers.add(worker)
        loop.add_reader(worker.status_fd, self._on_status, worker)
        loop.add_reader(worker.pidfd, self._on_exit, worker)
        log.info("worker %d started (pid %d)", slot, worker.pid)
        return worker

    def _on_status(self, worker: Worker) -> None:
        try:
            data = os.read(worker.status_fd, 256)
        except BlockingIOError:
            return
        if READY.strip() in data and not worker.ready.done():
            worker.ready.set_result(True)
        if not data:
            self._close_status(worker)

    def _close_status(self, worker: Worker) -> None:
        if worker.status_fd >= 0:
            asyncio.get_running_loop().remove_reader(worker.status_fd)
            os.close(worker.status_fd)
            worker.status_fd = -1

    def _on_exit(self, worker: Worker) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(worker.pidfd)
        os.close(worker.pidfd)
        code = worker.proc.wait()
        self._close_status(worker)
        self.workers.discard(worker)
        if not worker.ready.done():
            worker.ready.set_result(False)
        worker.exited.set_result(code)
        self._fold_snapshot(worker)
        lived = time.monotonic() - worker.started_at
        if self.stopping or worker.retiring or not self._is_serving(worker):
            log.info("worker %d (pid %d) %s", worker.slot, worker.pid, describe_exit(code))
            return
        # After a healthy run: 0.1 s, time for a stop signal sent to the whole process group
        # to reach us first. Sooner is a crash loop: back off.
        if lived >= HEALTHY_SECONDS:
            self._backoff.pop(worker.slot, None)
        delay = 0.1 if lived >= HEALTHY_SECONDS else self._next_backoff(worker.slot)
        log.warning(
            "worker %d (pid %d) %s after %.1f s; restarting in %.1f s",
            worker.slot,
            worker.pid,
            describe_exit(code),
            lived,
            delay,
        )
        self._schedule_restart(worker, delay)

    def _next_backoff(self, slot: int) -> float:
        delay = min(max(2 * self._backoff.get(slot, 0.0), FIRST_BACKOFF), MAX_BACKOFF)
        self._backoff[slot] = delay
        return delay

    def _schedule_restart(self, dead: Worker, delay: float) -> None:
        """Start a worker in ``dead``'s slot after ``delay``, unless a reload or a stop came
        first; a failed start (say, a certificate that no longer loads) is tried again."""
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def restart() -> None:
            assert handle is not None
            self._restarts.discard(handle)
            if self.stopping or not self._is_serving(dead):
                return
            try:
                self.slots[dead.slot] = self._spawn(dead.slot, self.config)
            except (OSError, TLSError) as exc:
                retry = self._next_backoff(dead.slot)
                log.error("cannot restart worker %d: %s; next try in %.1f s", dead.slot, exc, retry)
                self._schedule_restart(dead, retry)

        handle = loop.call_later(delay, restart)
        self._restarts.add(handle)

    def _is_serving(self, worker: Worker) -> bool:
        return worker.slot < len(self.slots) and self.slots[worker.slot] is worker

    # -- metrics ---------------------------------------------------------------------------

    async def _start_metrics(self) -> str | None:
        bind = self.config.metrics_bind
        if bind is None:
            return None
        from h2stream.observe.metrics import files_source, registry_for
        from h2stream.observe.metrics_server import MetricsServer

        self._snapshot_dir = tempfile.mkdtemp(prefix="h2stream-metrics-")
        source = files_source(os.path.join(self._snapshot_dir, "*.json"))
        self._metrics = MetricsServer(
            bind, registry_for(source), ready=lambda: self._serving and not self.stopping
        )
        try:
            return await self._metrics.start()
        except OSError as exc:
            self._metrics = None
            raise StartupError(
                f"cannot listen on --metrics-bind {bind}: {exc.strerror or exc}"
            ) from exc

    def _fold_snapshot(self, worker: Worker) -> None:
        """Add an exited worker's last snapshot into ``retired.json`` and drop its file.

        Its counters stay in the sum (Prometheus counters must not go backwards); its gauges
        leave it; the directory holds one file per live worker plus one. A scrape runs on
        this same loop, so it never sees the counts twice or not at all.
        """
        if self._snapshot_dir is None:
            return
        from h2stream.observe.metrics import collect_from, merge

        path = os.path.join(self._snapshot_dir, f"{worker.pid}.json")
        if not os.path.exists(path):
            return
        retired = os.path.join(self._snapshot_dir, "retired.json")
        total = merge(collect_from([retired, path]))
        total.final = True
        total.worker = "retired"
        try:
            with open(retired + ".tmp", "w") as out:
                out.write(total.to_json())
            os.replace(retired + ".tmp", retired)
            os.unlink(path)
        except OSError as exc:
            log.warning("cannot fold the metrics of worker pid %d: %s", worker.pid, exc)

    async def _await_ready(self, workers: list[Worker], timeout: float) -> bool:
        """True once every worker accepts; False if one exits first, on timeout or on stop."""
        stop = asyncio.ensure_future(self._stop.wait())
        pending: set[asyncio.Future[Any]] = {w.ready for w in workers}
        deadline = time.monotonic() + timeout
        try:
            while pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.error("workers did not start within %.0f s", timeout)
                    return False
                done, pending = await asyncio.wait(
                    pending | {stop}, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                pending.discard(stop)
                if stop in done:
                    return False
                if any(f is not stop and not f.result() for f in done):
                    return False
            return True
        finally:
            stop.cancel()

    def _signal(self, workers: list[Worker], signum: int) -> None:
        for worker in workers:
            if worker in self.workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signum)

    def _retire(self, workers: list[Worker], grace: float) -> None:
        """SIGTERM (drain), and SIGKILL whatever is still there after the drain deadline."""
        for worker in workers:
            worker.retiring = True
        self._signal(workers, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        loop.call_later(grace + EXIT_GRACE, self._signal, workers, signal.SIGKILL)

    # -- lifecycle -------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        if self.stopping:
            return
        if self._reload_task is not None and not self._reload_task.done():
            self._reload_again = True  # one more after this one: the file may have changed again
            return
        self._reload_task = asyncio.ensure_future(self._reload())

    async def _reload(self) -> None:
        log.info("SIGHUP: reloading the config and starting new workers")
        sd_notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            await self._reload_once()
        finally:
            if not self.stopping:
                sd_notify("READY=1")
        if self._reload_again and not self.stopping:
            self._reload_again = False
            self._reload_task = asyncio.ensure_future(self._reload())

    async def _reload_once(self) -> None:
        if self.stopping:
            return
        try:
            config = self.source.load()
            self._worker_config(config)
            self._open_listeners(config)
        except (ConfigError, TLSError, StartupError) as exc:
            log.error("reload abandoned, the running workers stay: %s", exc)
            self._close_unused_listeners(self.config)
            return
        if config.metrics_bind != self.config.metrics_bind:
            log.warning("reload: a new --metrics-bind takes effect only after a restart")
        fresh: list[Worker] = []
        try:
            for slot in range(config.workers):
                fresh.append(self._spawn(slot, config))
            ok = await self._await_ready(fresh, config.worker_start_timeout)
        except (OSError, TLSError) as exc:
            log.error("cannot start a worker: %s", exc)
            ok = False
        if not ok or self.stopping:
            if not self.stopping:
                log.error("reload abandoned: the new workers did not all start; the old stay")
            self._retire(fresh, 0.0)
            self._close_unused_listeners(self.config)
            return
        old, old_config = self.slots, self.config
        self.slots, self.config = fresh, config
        self._backoff.clear()
        self._retire(old, old_config.graceful_timeout)
        self._close_unused_listeners(config)
        log.info(
            "reloaded: pids %s serve; pids %s drain",
            " ".join(str(w.pid) for w in fresh),
            " ".join(str(w.pid) for w in old if w in self.workers) or "(none)",
        )

    async def _shutdown(self) -> None:
        self.stopping = True
        sd_notify("STOPPING=1")
        if self._reload_task is not None and not self._reload_task.done():
            # Its new workers, if any, are in self.workers: they drain with the rest.
            self._reload_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reload_task
        for handle in self._restarts:
            handle.cancel()
        self._restarts.clear()
        workers = list(self.workers)
        log.info("stopping: draining %d workers", len(workers))
        self._signal(workers, signal.SIGTERM)
        # Our copies of the sockets go now, so once the workers close theirs new connections
        # are refused (a load balancer moves on) rather than queued where nobody accepts.
        self._close_listeners()
        exits = [w.exited for w in workers]
        if exits:
            _, late = await asyncio.wait(exits, timeout=self.config.graceful_timeout + EXIT_GRACE)
            if late:
                log.error("%d workers did not exit in time; killing them", len(late))
                self._signal(list(self.workers), signal.SIGKILL)
                await asyncio.wait(exits, timeout=EXIT_GRACE)
        if self._metrics is not None:
            # Last: /readyz said 503 through the whole drain.
            await self._metrics.close()
            self._metrics = None

    def _announce(self) -> None:
        tls = self.config.tls
        for listener in self._listening(self.config):
            kind = "h2 over TLS" if tls else "h2c"
            if proxied(self.config, listener.bind):
                kind += ", PROXY protocol"
            line = f"h2stream listening on {listener.url(tls)} ({kind}, {self.config.workers}"
            print(line + " workers)", flush=True)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        try:
            self.activated = [SharedListener(None, self.config, a) for a in listen_sockets()]
        except ActivationError as exc:
            raise StartupError(str(exc)) from exc
        self._open_listeners(self.config)
        self._worker_config(self.config)
        metrics_url = await self._start_metrics()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        try:
            self.slots = [self._spawn(slot, self.config) for slot in range(self.config.workers)]
            started = await self._await_ready(self.slots, self.config.worker_start_timeout)
        except OSError as exc:
            log.error("cannot start a worker: %s", exc)
            started = False
        if started:
            self._serving = True
            self._announce()
            if metrics_url is not None:
                line = f"h2stream metrics and health on {metrics_url} (/metrics /healthz /readyz)"
                print(line, flush=True)
            sd_notify(f"READY=1\nMAINPID={os.getpid()}")
            log.info(
                "supervisor %d: %d workers (pids %s)",
                os.getpid(),
                len(self.slots),
                " ".join(str(w.pid) for w in self.slots),
            )
            await self._stop.wait()
        await self._shutdown()
        return 0 if started or self._stop.is_set() else 1

    def close(self) -> None:
        self._close_listeners()
        if self._snapshot_dir is not None:
            shutil.rmtree(self._snapshot_dir, ignore_errors=True)
        if self._self_signed is not None:
            shutil.rmtree(os.path.dirname(self._self_signed[0]), ignore_errors=True)
        for fd in (self._lifeline_r, self._lifeline_w):
            with contextlib.suppress(OSError):
                os.close(fd)


def supervise(config: Config, source: ConfigSource) -> int:
    """Run the supervisor until SIGTERM/SIGINT; return the process exit code."""
    if config.pid_file:
        try:
            write_pid_file(config.pid_file)
        except PidFileError as exc:
            raise StartupError(str(exc)) from None
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    supervisor: Supervisor | None = None
    try:
        supervisor = Supervisor(source, config)
        return loop.run_until_complete(supervisor.run())
    finally:
        if supervisor is not None:
            supervisor.close()
        loop.close()
        if config.pid_file:
            remove_pid_file(config.pid_file)
