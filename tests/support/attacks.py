"""The attack tests' three checks, and the server they attack.

Each attack test shows (a) what the server answered, as the raw client saw it
(:class:`support.clients.RawConnection`: the frame and its error code), (b) that the server's
RSS and open fds stayed within bounds, measured with psutil on the server process
(:class:`Footprint`), and (c) that a well-behaved client on another connection was served
normally while the attack ran (:func:`attack_running`, :func:`served_during`). Everything is
bounded in count and time, and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .clients import fetch
from .metrics import LimitEvents, metrics_url
from .polling import wait_until
from .servers import ServerProcess

MIB = 1 << 20


def start(
    server_factory: Callable[..., ServerProcess], *args: str, root: Path | None = None
) -> tuple[ServerProcess, LimitEvents]:
    """A server process with a metrics listener, warmed up by one request."""
    server = server_factory(*args, "--metrics-bind", "127.0.0.1:0", root=root)
    metrics = LimitEvents(metrics_url(server))
    fetch(server.port, "/hello.txt")
    return server, metrics


@dataclass
class Footprint:
    """RSS and open fds of the server process, to compare after an attack."""

    server: ServerProcess
    rss: int = 0
    fds: int = 0

    def __post_init__(self) -> None:
        self.rss = self.server.rss()
        self.fds = self.server.fd_count()

    def assert_bounded(self, rss_slack: int = 32 * MIB, fd_slack: int = 2) -> None:
        """Fds back near the baseline (connections closed, files closed) within a bounded
        wait; RSS within ``rss_slack`` of it."""
        wait_until(self.server.fd_count, 10, 0.1, until=lambda fds: fds <= self.fds + fd_slack)
        fds, rss = self.server.fd_count(), self.server.rss()
        assert fds <= self.fds + fd_slack, f"fds {self.fds} -> {fds}: something leaked"
        assert rss <= self.rss + rss_slack, (
            f"RSS grew {(rss - self.rss) / MIB:.1f} MiB (from {self.rss / MIB:.1f} MiB)"
        )


@contextlib.contextmanager
def attack_running(
    mount: Callable[[], None], max_seconds: float = 30
) -> Iterator[Callable[[], int]]:
    """Run ``mount`` (one round of an attack) over and over on a thread until the block ends.

    Yields a function returning the rounds completed so far; the block runs once the first
    round has started, so whatever it does happens during the attack.
    """
    stop = threading.Event()
    started = threading.Event()
    rounds = [0]
    errors: list[BaseException] = []

    def run() -> None:
        deadline = time.monotonic() + max_seconds
        while not stop.is_set() and time.monotonic() < deadline:
            started.set()
            try:
                mount()
            except BaseException as exc:  # reported in the test's thread
                errors.append(exc)
                return
            rounds[0] += 1

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield lambda: rounds[0]
        alive = thread.is_alive()
    finally:
        stop.set()
        thread.join(max_seconds + 10)
    if errors:
        raise errors[0]
    assert alive, "the attack ended before the good client was done"


def served_during(port: int, path: str, expected: bytes, count: int = 3) -> None:
    """(c): a well-behaved client gets ``path`` ``count`` times, on fresh connections."""
    for _ in range(count):
        assert fetch(port, path) == expected
