"""Helpers for the observability tests: find a server's metrics listener, scrape and parse it.

Scrapes go through the real listener with urllib and are parsed with prometheus_client's own
parser, so a malformed exposition fails the tests.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

METRICS_LINE = "h2stream metrics and health on "


def metrics_base(server: Any, timeout: float = 20.0) -> str:
    """The metrics listener's base URL, from the line the server prints after its listeners."""
    lines: list[str] = []

    def read() -> None:
        while True:
            line = server.proc.stdout.readline()
            if not line:
                return
            lines.append(line)
            if METRICS_LINE in line:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    for line in lines:
        if METRICS_LINE in line:
            return line.split(METRICS_LINE, 1)[1].split()[0]
    raise AssertionError(f"no metrics line from the server; stdout had {lines!r}")


def get(url: str, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a GET (errors are answers too)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


class Scrape:
    """A parsed scrape: families by name, and sample values by (name, labels)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in self.families.values():
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                self.samples[key] = sample.value

    def value(self, name: str, **labels: str) -> float:
        """One sample's value (0 when absent: counters by label appear once counted)."""
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def total(self, name: str) -> float:
        return sum(v for (n, _), v in self.samples.items() if n == name)


def scrape(base: str) -> Scrape:
    status, headers, body = get(base + "/metrics")
    assert status == 200, (status, body[:200])
    assert headers.get("Content-Type") == CONTENT_TYPE_LATEST
    return Scrape(body.decode())


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return condition()
        time.sleep(step)
    return True
