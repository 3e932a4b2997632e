"""h2load against the server: every request of a heavy run succeeds.

No timing assertions (speed belongs to the benchmarks): the run must finish, every request
must be done and succeed with a 2xx, and the server must still serve afterwards.
"""

from __future__ import annotations

import pytest
from support.files import SIZES
from support.h2load import assert_all_succeeded, h2load
from support.servers import ServerProcess


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
