"""Start a server process, wait until it accepts on loopback, stop it by its pid.

Only processes this module started are ever signalled: the Popen's pid and, if it forked
workers, the descendants psutil finds under that pid at stop time.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

LOOPBACK = "127.0.0.1"


class StartError(RuntimeError):
    """The server exited, or did not accept connections, before its deadline."""


# Ports free_port has handed out in this run: the kernel may offer a released port again at
# once, and two servers launched together on one port would both look up (one answering the
# other's probes) while the second has exited.
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port that was free a moment ago and not handed out before in this run: bind port 0 on
    loopback, read it, release it.

    Peers take a port on their command line or in a config file, so the harness cannot hand them
    a bound socket; the tiny window between probe and bind is accepted (start retries on it).
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((LOOPBACK, 0))
            port = int(probe.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: ask the kernel to SIGTERM it when the harness dies.

    The servers run in their own session (see start), so if the harness is killed outright
    (a test's timeout sends SIGKILL) nothing else would stop them.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Started:
    proc: subprocess.Popen[bytes]
    log_path: Path
    argv: list[str]

    @property
    def pid(self) -> int:
        return self.proc.pid


def pinned_to(cpus: frozenset[int] | None) -> Callable[[], None] | None:
    """A preexec_fn that keeps the child (and its threads and children) on ``cpus``."""
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def start(
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    log_path: Path,
    cpus: frozenset[int] | None = None,
) -> Started:
    """Spawn ``argv`` with its output in ``log_path`` (a pipe could fill and stall the server);
    ``cpus``: the CPUs it may run on (``--pin``), else any."""
    full_env = {**os.environ, **env}
    pin = pinned_to(cpus)

    def before_exec() -> None:
        _die_with_parent()
        if pin is not None:
            pin()

    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Own session: a Ctrl-C in the harness's terminal reaches the harness, which then
            # stops each server in order, instead of racing all of them at once.
            start_new_session=True,
            preexec_fn=before_exec,
        )
    return Started(proc, log_path, argv)


def log_tail(path: Path, limit: int = 1200) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace").strip()


def wait_accepting(started: Started, port: int, timeout: float) -> float:
    """Return seconds until a TCP connect to ``port`` succeeds; raise StartError otherwise."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        code = started.proc.poll()
        if code is not None:
            raise StartError(f"exited with {code}: {log_tail(started.log_path)}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            try:
                s.connect((LOOPBACK, port))
            except OSError:
                time.sleep(0.05)
                continue
        return time.monotonic() - t0
    raise StartError(f"not accepting on port {port} after {timeout:.0f}s")


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        kids: list[psutil.Process] = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    return kids


def stop(started: Started, grace: float = 5.0) -> int | None:
    """SIGTERM the server, SIGKILL it (and descendants it left) after ``grace`` seconds."""
    stop_all([started], grace)
    return started.proc.returncode


def stop_all(servers: list[Started], grace: float = 5.0) -> None:
    """Stop several servers at once: all get SIGTERM first, so their shutdowns overlap."""
    kids = {st.pid: _descendants(st.pid) for st in servers}
    for st in servers:
        if st.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(st.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for st in servers:
        try:
            st.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(st.pid, signal.SIGKILL)
            st.proc.wait(timeout=grace)
        # Workers that outlived their parent (a multi-process server killed hard) are ours too.
        for kid in kids[st.pid]:
            with contextlib.suppress(psutil.Error):
                if kid.is_running():
                    kid.kill()
