"""strace attached to a running server process, its calls recorded in a log file."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .commands import require


class Strace:
    """Records the system calls named in ``calls`` (strace's ``-e trace=`` list) that process
    ``pid`` and its threads make, until :meth:`stop`."""

    def __init__(self, pid: int, log: Path, calls: str) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [require("strace"), "-q", "-f", "-e", f"trace={calls}", "-o", str(log), "-p", str(pid)],
            stderr=subprocess.DEVNULL,
        )

    def lines(self) -> list[str]:
        """What is recorded so far (nothing before strace has attached)."""
        return self.log.read_text().splitlines() if self.log.exists() else []

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
