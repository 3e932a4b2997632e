"""h2load against the server: every request of a heavy run succeeds.

No timing assertions (speed belongs to the benchmarks): the run must finish, every request
must be done and succeed with a 2xx, and the server must still serve afterwards.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

import pytest
from conftest import SIZES, ServerProcess, require

_REQUESTS = re.compile(
    r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored",
    re.M,
)
_STATUS = re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", re.M)
_TRAFFIC_DATA = re.compile(r"^traffic: .*?, [\d.]+[KMG]?B \((\d+)\) data", re.M)
_PROTOCOL = re.compile(r"^Application protocol: (\S+)", re.M)


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


def h2load(url: str, *args: str, timeout: float = 240) -> H2loadRun:
    # -N: a connection silent for 15 s is given up (its requests fail) instead of waited on.
    command = [require("h2load"), "-N", "15", *args, url]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"h2load did not finish within {timeout} s: {exc.stdout!r}")
    output = result.stdout + result.stderr
    requests = _REQUESTS.search(output)
    status = _STATUS.search(output)
    traffic = _TRAFFIC_DATA.search(output)
    protocol = _PROTOCOL.search(output)
    assert requests and status and traffic, f"unexpected h2load output:\n{output}"
    total, started, done, succeeded, failed, errored = map(int, requests.groups())
    s2xx, s3xx, s4xx, s5xx = map(int, status.groups())
    return H2loadRun(
        total=total,
        started=started,
        done=done,
        succeeded=succeeded,
        failed=failed,
        errored=errored,
        status_2xx=s2xx,
        status_other=s3xx + s4xx + s5xx,
        data_bytes=int(traffic.group(1)),
        protocol=protocol.group(1) if protocol else "",
        output=output,
    )


def assert_all_succeeded(run: H2loadRun, n: int) -> None:
    assert (run.total, run.started, run.done, run.succeeded) == (n, n, n, n), run.output
    assert (run.failed, run.errored) == (0, 0), run.output
    assert (run.status_2xx, run.status_other) == (n, 0), run.output


def assert_still_serving(server: ServerProcess) -> None:
    tls = server.url.startswith("https")
    run = h2load(f"{server.url}/hello.txt", "-n", "1", timeout=30)
    assert_all_succeeded(run, 1)
    assert run.protocol == ("h2" if tls else "h2c")


@pytest.mark.slow
def test_many_small_requests(h2c_server: ServerProcess) -> None:
    n = 20000
    run = h2load(f"{h2c_server.url}/kib.bin", "-n", str(n), "-c", "10", "-m", "50")
    assert_all_succeeded(run, n)
    assert run.protocol == "h2c"
    # Every body arrived whole: h2load counts DATA payload bytes.
    assert run.data_bytes == n * SIZES["kib.bin"]
    assert_still_serving(h2c_server)


@pytest.mark.slow
def test_few_large_requests(h2c_server: ServerProcess) -> None:
    n = 20
    run = h2load(f"{h2c_server.url}/f100m.bin", "-n", str(n), "-m", "4")
    assert_all_succeeded(run, n)
    assert run.data_bytes == n * SIZES["f100m.bin"]
    assert_still_serving(h2c_server)


@pytest.mark.slow
def test_small_requests_over_tls(tls_server: ServerProcess) -> None:
    n = 2000
    run = h2load(f"{tls_server.url}/kib.bin", "-n", str(n), "-c", "4", "-m", "20")
    assert_all_succeeded(run, n)
    assert run.protocol == "h2"
    assert run.data_bytes == n * SIZES["kib.bin"]
    assert_still_serving(tls_server)


@pytest.mark.slow
def test_large_requests_over_tls_with_small_windows(tls_server: ServerProcess) -> None:
    """The copy path under flow control that binds: 64 KiB stream windows (-w 16)."""
    n = 4
    run = h2load(f"{tls_server.url}/mib.bin", "-n", str(n), "-m", "2", "-w", "16", "-W", "16")
    assert_all_succeeded(run, n)
    assert run.data_bytes == n * SIZES["mib.bin"]


@pytest.mark.slow
def test_mixed_sizes_with_small_windows(h2c_server: ServerProcess) -> None:
    """Zero-copy under binding flow control (64 KiB windows) with many streams at once."""
    n = 200
    run = h2load(
        f"{h2c_server.url}/mib.bin", "-n", str(n), "-c", "2", "-m", "32", "-w", "16", "-W", "16"
    )
    assert_all_succeeded(run, n)
    assert run.data_bytes == n * SIZES["mib.bin"]
