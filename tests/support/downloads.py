"""Downloads by real clients (curl, nghttp), hashed as they stream: a 256 MiB body is never
held in memory, and a client that outlives its deadline is killed."""

from __future__ import annotations

import hashlib
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

CHUNK = 1 << 20


@dataclass
class Fetched:
    sha256: str
    size: int
    returncode: int
    stderr: str


class HashedDownload:
    """``command`` running in the background, its stdout hashed on a thread as it arrives.

    ``progress`` is set once ``progress_at`` bytes arrived, so a test can act while bytes
    flow; a watchdog kills the client after ``timeout`` seconds, which ends its stdout.
    """

    def __init__(
        self, command: Sequence[str], timeout: float = 120.0, progress_at: int = 16 << 20
    ) -> None:
        self.command = list(command)
        self.timeout = timeout
        self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.digest = hashlib.sha256()
        self.size = 0
        self.progress = threading.Event()
        self._progress_at = progress_at
        self._watchdog = threading.Timer(timeout, self.proc.kill)
        self._watchdog.start()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := self.proc.stdout.read(CHUNK):
            self.digest.update(chunk)
            self.size += len(chunk)
            if self.size >= self._progress_at:
                self.progress.set()

    def finish(self) -> tuple[int, str]:
        """Wait for the client to exit: its exit code and its stderr. A client the watchdog
        had to kill fails the test."""
        self._thread.join(self.timeout + 10)
        try:
            code = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            pytest.fail(f"{self.command[0]} did not finish")
        finally:
            # The timer thread ends when it fires or is cancelled: not alive means it fired.
            timed_out = not self._watchdog.is_alive()
            self._watchdog.cancel()
        assert not timed_out, f"{self.command[0]} did not finish within {self.timeout} s"
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read().decode(errors="replace")

    def fetched(self) -> Fetched:
        """:meth:`finish`, with the hash and size of what arrived."""
        code, stderr = self.finish()
        return Fetched(self.digest.hexdigest(), self.size, code, stderr)


def stream_command(command: Sequence[str], timeout: float = 90.0) -> Fetched:
    """Run ``command`` to its end, hashing its stdout as it streams."""
    return HashedDownload(command, timeout).fetched()
