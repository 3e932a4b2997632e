"""Helpers for the operations tests (workers, reloads, HAProxy): processes, pids, h2load.

Every wait here has a deadline; processes are found by pid (psutil), never by name.
"""

from __future__ import annotations

import importlib.util
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import psutil
from conftest import REPO, ServerProcess

_spec = importlib.util.spec_from_file_location("h2load_parse", REPO / "tools" / "h2load_parse.py")
assert _spec is not None and _spec.loader is not None
h2load_parse = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(h2load_parse)

METRICS_LINE = re.compile(r"metrics and health on (http://[^ ]+)")


def h2stream_command(*args: str) -> list[str]:
    """``python -m h2stream ARGS`` as an argument list."""
    return [sys.executable, "-m", "h2stream", *args]


def wait_until(condition: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something true or ``timeout`` passes; return it."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(interval)


def readline_within(stream: IO[str], timeout: float) -> str:
    """One line from a child's pipe, or "" after ``timeout`` (the reader thread is a daemon)."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return ""


def metrics_url(server: ServerProcess, timeout: float = 10.0) -> str:
    """The ``--metrics-bind`` URL: the line printed after the data listener's."""
    assert server.proc.stdout is not None
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        line = readline_within(server.proc.stdout, left)
        match = METRICS_LINE.search(line)
        if match:
            return match.group(1)
    raise AssertionError("no metrics listener line on stdout")


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


def log_text(server: ServerProcess) -> str:
    return "".join(server.stderr_lines)


def wait_for_log(server: ServerProcess, text: str, timeout: float = 20.0) -> bool:
    return bool(wait_until(lambda: text in log_text(server), timeout))


class H2load:
    """h2load in the background; :meth:`result` waits (bounded) and parses its summary."""

    def __init__(self, *args: str, timeout: float = 60.0) -> None:
        self.command = ["h2load", *args]
        self.timeout = timeout
        self.proc = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def running(self) -> bool:
        return self.proc.poll() is None

    def result(self) -> dict[str, Any]:
        try:
            output, _ = self.proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            output, _ = self.proc.communicate(timeout=10)
            raise AssertionError(f"h2load did not finish in {self.timeout} s:\n{output}") from None
        parsed: dict[str, Any] = h2load_parse.parse(output)
        parsed["output"] = output
        parsed["returncode"] = self.proc.returncode
        return parsed


def assert_all_succeeded(result: dict[str, Any], expected: int | None = None) -> int:
    """No request failed or errored, every status 2xx; return how many succeeded."""
    requests = result["requests"]
    detail = result["output"][-1500:]
    assert requests["succeeded"] is not None, detail
    assert requests["failed"] == 0 and requests["errored"] == 0, detail
    assert requests["succeeded"] == requests["done"], detail
    if expected is not None:
        assert requests["succeeded"] == expected, detail
    # (With -D, requests finishing after the measured period count in status codes only.)
    assert result["status"].get("2xx", 0) >= requests["succeeded"], detail
    assert not any(n for kind, n in result["status"].items() if kind != "2xx"), detail
    return int(requests["succeeded"])


def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


class Launched(ServerProcess):
    """``python -m h2stream ARGS`` exactly as given (no ROOT or --bind added), e.g. a server
    configured by a file or the environment; otherwise a :class:`ServerProcess`."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self._launch(h2stream_command(*args), env)
