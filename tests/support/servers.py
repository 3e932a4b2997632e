"""Real h2stream servers on loopback, the one way each kind is started.

Two kinds: a child process (:class:`ServerProcess`: the real CLI, measured with psutil,
stopped by its pid) and an in-process server on its own thread and loop
(:class:`InProcessServer`: the same code, with the process-wide counters readable by the
test; :class:`AppServer` is one running an application). Also here: the worker processes of
a supervisor, found by pid (psutil), never by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import psutil

from h2stream.config import Config, parse_bind
from h2stream.handlers.app import App
from h2stream.handlers.build import build_handler
from h2stream.handlers.static import StaticFiles
from h2stream.runtime.server import Server, new_event_loop

from .commands import REPO, h2stream_command
from .polling import wait_until

LISTEN_LINE = re.compile(r"listening on (https?)://(\[[^\]]+\]|[^:/\s]+):(\d+)")
START_TIMEOUT = 20.0


class ServerProcess:
    """``python -m h2stream serve ROOT ARGS`` as a child process; stopped by its pid.

    ``--bind 127.0.0.1:0`` is added unless ARGS bind; a ROOT of None is left out (the working
    directory, or the app alone). The constructor returns once ``listeners`` listening lines
    were printed (their URLs in ``urls``); stderr is collected in ``stderr_lines`` meanwhile,
    so the child never blocks on a full pipe. ``wrapper`` goes in front of the command (e.g.
    ``setpriv``), ``preexec_fn`` runs in the child before it starts (e.g. an rlimit).
    """

    def __init__(
        self,
        root: Path | str | None,
        *args: str,
        env: dict[str, str] | None = None,
        listeners: int = 1,
        wrapper: Sequence[str] = (),
        preexec_fn: Callable[[], None] | None = None,
        cwd: Path = REPO,
    ) -> None:
        command = h2stream_command("serve", *([] if root is None else [str(root)]), *args)
        if not any(a == "--bind" or a.startswith("--bind=") for a in args):
            command += ["--bind", "127.0.0.1:0"]
        self._launch([*wrapper, *command], env, preexec_fn, listeners, cwd)

    @classmethod
    def exact(cls, *args: str, env: dict[str, str] | None = None) -> ServerProcess:
        """``python -m h2stream ARGS`` exactly as given (no ROOT or --bind added), e.g. a
        server configured by a file or the environment."""
        server = cls.__new__(cls)
        server._launch(h2stream_command(*args), env)
        return server

    def _launch(
        self,
        command: list[str],
        env: dict[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
        listeners: int = 1,
        cwd: Path = REPO,
    ) -> None:
        """Start ``command`` and wait for its listening lines."""
        self.command = command
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            preexec_fn=preexec_fn,
        )
        self.pid = self.proc.pid
        self.urls: list[str] = []
        self.stderr_lines: list[str] = []
        self._drain = threading.Thread(target=self._drain_stderr, daemon=True)
        self._drain.start()
        self._read_listen_lines(listeners)
        self.url = self.urls[0]
        self.port = int(self.url.rsplit(":", 1)[1])
        self.ps = psutil.Process(self.pid)

    def _read_listen_lines(self, count: int) -> None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        while len(self.urls) < count and time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            match = LISTEN_LINE.search(line)
            if match:
                scheme, host, port = match.groups()
                self.urls.append(f"{scheme}://{host}:{port}")
        if len(self.urls) < count:
            self.stop()
            raise RuntimeError(f"server did not start: {self.log_text()}")

    def _drain_stderr(self) -> None:
        # Keep reading so the child never blocks on a full pipe.
        if self.proc.stderr is not None:
            for line in self.proc.stderr:
                self.stderr_lines.append(line)

    def log_text(self) -> str:
        """What the server wrote to stderr so far; all of it once it has exited."""
        if self.proc.poll() is not None:
            # Children (workers) may hold the pipe a little longer: bounded.
            self._drain.join(5)
        return "".join(self.stderr_lines)

    def wait_for_log(self, text: str, timeout: float = 20.0) -> bool:
        return bool(wait_until(lambda: text in self.log_text(), timeout))

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def fd_count(self) -> int:
        return self.ps.num_fds()

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)


def loopback_config(root: Path | str, /, **changes: Any) -> Config:
    """The Config of an in-process test server: ``root``, port 0 on 127.0.0.1, a short
    graceful timeout, then ``changes``."""
    config = Config(root=str(root), binds=(parse_bind("127.0.0.1:0"),), graceful_timeout=2.0)
    return config.replace(**changes)


class InProcessServer:
    """The real server on a thread of the test process, so tests can read its counters.

    ``handler`` defaults to the directory at ``config.root``; handlers run on the server's
    loop (:meth:`call`, :meth:`soon` reach it from the test's thread).
    """

    def __init__(self, config: Config, handler: Any = None) -> None:
        self.config = config
        self.loop = new_event_loop("auto")
        self.server = Server(config, handler if handler is not None else StaticFiles(config.root))
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.call(self.server.start(announce=lambda line: None))
        scheme, host, port = self.server.addresses[0]
        self.url = f"{scheme}://{host}:{port}"
        self.port = port

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def soon(self, fn: Callable[..., object], *args: Any) -> None:
        """Run ``fn(*args)`` on the server's loop (e.g. ``event.set`` of an asyncio.Event)."""
        self.loop.call_soon_threadsafe(fn, *args)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.call(self.server.drain(), timeout=self.config.graceful_timeout + 10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class AppServer(InProcessServer):
    """An in-process server running ``app``, composed by the CLI's own ``build_handler`` as
    ``h2stream serve ROOT --app`` composes it: built-in endpoints in front, the app, the
    directory behind."""

    def __init__(self, root: Path, app: App | None, **changes: Any) -> None:
        config = loopback_config(root, **changes)
        self.app = app
        super().__init__(config, build_handler(config, app, serve_root=True))

    def tasks(self) -> int:
        """Handler tasks still running (read on the loop, where the set changes)."""
        assert self.app is not None
        app = self.app

        async def count() -> int:
            return len(app.tasks)

        return int(self.call(count()))

    def wait_no_tasks(self, timeout: float = 10.0) -> bool:
        return bool(wait_until(lambda: self.tasks() == 0, timeout, 0.02))


# -- worker processes --------------------------------------------------------------------------


def worker_pids(supervisor_pid: int) -> set[int]:
    """The live worker processes of a supervisor (its children running h2stream.runtime.worker)."""
    pids = set()
    try:
        children = psutil.Process(supervisor_pid).children()
    except psutil.NoSuchProcess:
        return set()
    for child in children:
        try:
            if (
                "h2stream.runtime.worker" in child.cmdline()
                and child.status() != psutil.STATUS_ZOMBIE
            ):
                pids.add(child.pid)
        except psutil.NoSuchProcess:
            continue
    return pids


def wait_for_workers(
    supervisor_pid: int, count: int, timeout: float = 20.0, without: Iterable[int] = ()
) -> set[int]:
    """Wait until the supervisor has ``count`` workers, none of them in ``without``."""
    excluded = set(without)

    def found() -> set[int] | None:
        pids = worker_pids(supervisor_pid)
        return pids if len(pids) == count and not pids & excluded else None

    pids = wait_until(found, timeout)
    assert pids, f"expected {count} workers (not {excluded}), found {worker_pids(supervisor_pid)}"
    return set(pids)


def established_by_pid(pids: Iterable[int], port: int) -> dict[int, int]:
    """How many established connections on local ``port`` each process holds."""
    counts = {}
    for pid in pids:
        try:
            connections = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            counts[pid] = 0
            continue
        counts[pid] = sum(
            1 for c in connections if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
        )
    return counts
