"""Waiting for something to happen: every wait polls with a deadline, never a bare sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    sample: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    *,
    until: Callable[[T], object] = bool,
) -> T:
    """Call ``sample`` every ``interval`` seconds until ``until`` holds for what it returns
    (by default: until it returns something true) or ``timeout`` passes; return the last
    result, so ``assert wait_until(...)`` checks it and a value found can be used."""
    deadline = time.monotonic() + timeout
    while True:
        result = sample()
        if until(result) or time.monotonic() >= deadline:
            return result
        time.sleep(interval)


def steady(
    sample: Callable[[], T], interval: float = 0.2, timeout: float = 3.0, *, strict: bool = False
) -> T:
    """``sample()`` once two readings ``interval`` apart agree: a settled baseline. At
    ``timeout``, the last reading, or with ``strict`` an AssertionError."""
    previous = sample()
    agreed = False

    def again() -> T:
        nonlocal previous, agreed
        current = sample()
        agreed = current == previous
        previous = current
        return current

    time.sleep(interval)
    value = wait_until(again, max(0.0, timeout - interval), interval, until=lambda _: agreed)
    if strict and not agreed:
        raise AssertionError(f"still changing after {timeout} s: {value}")
    return value
