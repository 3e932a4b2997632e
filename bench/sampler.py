"""CPU seconds and peak RSS of a server's process tree while one h2load run lasts.

A thread polls every 50 ms. CPU is the difference of user+system (own and reaped children)
between start and stop, summed over the tree. Peak RSS is the largest sampled sum of the
tree's RSS; for a one-process server the kernel's own high-water mark (VmHWM, reset through
/proc/PID/clear_refs at start) also catches a peak shorter than the polling interval.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path

import psutil

MIB = 1 << 20
INTERVAL = 0.05


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system + t.children_user + t.children_system)


def _reset_hwm(pid: int) -> bool:
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0), so each run's
    # peak is its own and not the process's lifetime peak.
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _vm_hwm(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


@dataclass
class Usage:
    cpu_s: float
    peak_rss_mib: float
    sampled_peak_rss_mib: float
    hwm_rss_mib: float | None
    processes: int
    samples: int


class Sampler:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._cpu0: dict[int, float] = {}
        self._peak = 0
        self._samples = 0
        self._hwm_ok = False

    def __enter__(self) -> Sampler:
        procs = _tree(self.pid)
        for p in procs:
            with contextlib.suppress(psutil.Error):
                self._cpu0[p.pid] = _cpu(p)
        self._hwm_ok = len(procs) == 1 and _reset_hwm(self.pid)
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _sample(self) -> None:
        total = 0
        for p in _tree(self.pid):
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        self._peak = max(self._peak, total)
        self._samples += 1

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL):
            self._sample()

    def usage(self) -> Usage:
        """Call after the ``with`` block: the figures for the interval it covered."""
        self._sample()
        procs = _tree(self.pid)
        cpu = 0.0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                cpu += _cpu(p) - self._cpu0.get(p.pid, 0.0)
        hwm = _vm_hwm(self.pid) if self._hwm_ok and len(procs) == 1 else None
        sampled = self._peak / MIB
        hwm_mib = hwm / MIB if hwm is not None else None
        peak = max(sampled, hwm_mib or 0.0)
        return Usage(cpu, peak, sampled, hwm_mib, len(procs), self._samples)
