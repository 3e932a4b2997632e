"""--gc-threshold (runtime/gcpolicy.py): once serving, the youngest generation is collected
every N allocations instead of Python's 700; 0 leaves the collector as Python set it. Seen
from outside through python_gc_collections_total on the metrics listener."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from support.h2load import assert_all_succeeded, h2load
from support.metrics import scrape
from support.servers import ServerProcess

REQUESTS = 40_000


def collections_under_load(observed: Callable[..., tuple[ServerProcess, str]], *args: str) -> float:
    server, metrics = observed(*args)
    before = scrape(metrics).value("python_gc_collections_total", generation="0")
    run = h2load(
        f"http://127.0.0.1:{server.port}/kib.bin", "-n", str(REQUESTS), "-c", "10", "-m", "100"
    )
    assert_all_succeeded(run, REQUESTS)
    return scrape(metrics).value("python_gc_collections_total", generation="0") - before


def test_the_default_collects_far_less_often_than_python(
    observed: Callable[..., tuple[ServerProcess, str]],
) -> None:
    python_default = collections_under_load(observed, "--gc-threshold", "0")
    ours = collections_under_load(observed)
    assert ours <= python_default, (ours, python_default)
    if python_default < 20:
        # 3.13 counts what triggers a young collection differently: under this load its own
        # schedule already collects only a few times, leaving nothing to compare.
        pytest.skip(f"Python's own schedule collected only {python_default:.0f} times")
    # Python's 700 collects every couple of hundred requests here on 3.11 and 3.12.
    assert ours * 5 < python_default, (ours, python_default)
