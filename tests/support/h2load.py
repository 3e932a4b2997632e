"""h2load, run in the background or to its end, its summary parsed by the benchmark's own
parser (``tools/h2load_parse.py``), and the one check that every request of a run succeeded."""

from __future__ import annotations

import importlib.util
import subprocess
from dataclasses import dataclass

from .commands import REPO, require

_spec = importlib.util.spec_from_file_location("h2load_parse", REPO / "tools" / "h2load_parse.py")
assert _spec is not None and _spec.loader is not None
h2load_parse = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(h2load_parse)


@dataclass
class H2loadRun:
    total: int
    started: int
    done: int
    succeeded: int
    failed: int
    errored: int
    status_2xx: int
    status_other: int
    data_bytes: int
    protocol: str
    output: str
    returncode: int

    @classmethod
    def parse(cls, output: str, returncode: int) -> H2loadRun:
        parsed = h2load_parse.parse(output)
        requests, status = parsed["requests"], parsed["status"]
        assert requests["total"] is not None and status and parsed["data_bytes"] is not None, (
            f"unexpected h2load output:\n{output}"
        )
        return cls(
            total=requests["total"],
            started=requests["started"],
            done=requests["done"],
            succeeded=requests["succeeded"],
            failed=requests["failed"],
            errored=requests["errored"],
            status_2xx=status.get("2xx", 0),
            status_other=sum(n for kind, n in status.items() if kind != "2xx"),
            data_bytes=parsed["data_bytes"],
            protocol=parsed["protocol"] or "",
            output=output,
            returncode=returncode,
        )


class H2load:
    """h2load in the background; :meth:`result` waits (bounded) and parses its summary."""

    def __init__(self, *args: str, timeout: float = 60.0) -> None:
        self.command = [require("h2load"), *args]
        self.timeout = timeout
        self.proc = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def running(self) -> bool:
        return self.proc.poll() is None

    def result(self) -> H2loadRun:
        try:
            output, _ = self.proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            output, _ = self.proc.communicate(timeout=10)
            raise AssertionError(f"h2load did not finish in {self.timeout} s:\n{output}") from None
        return H2loadRun.parse(output, self.proc.returncode)


def h2load(url: str, *args: str, timeout: float = 240) -> H2loadRun:
    """h2load ARGS URL to its end. -N: a connection silent for 15 s is given up (its requests
    fail) instead of waited on."""
    return H2load("-N", "15", *args, url, timeout=timeout).result()


def assert_all_succeeded(run: H2loadRun, expected: int | None = None) -> int:
    """No request failed or errored, every status 2xx; with ``expected``, exactly that many
    requests, all of them done. Returns how many succeeded."""
    detail = run.output[-3000:]
    assert (run.failed, run.errored) == (0, 0), detail
    assert run.succeeded == run.done, detail
    if expected is not None:
        assert (run.total, run.started, run.done, run.succeeded) == (expected,) * 4, detail
        assert run.status_2xx == expected, detail
    else:
        # With -D, requests finishing after the measured period count in status codes only.
        assert run.status_2xx >= run.succeeded, detail
    assert run.status_other == 0, detail
    return run.succeeded
