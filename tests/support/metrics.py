"""A server's metrics listener (``--metrics-bind``): find it, scrape it, read figures from it.

Scrapes go through the real listener with urllib and are parsed with prometheus_client's own
parser, so a malformed exposition fails the tests.
"""

from __future__ import annotations

import queue
import re
import threading
import time
import urllib.error
import urllib.request
from typing import IO

from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from .polling import wait_until
from .servers import ServerProcess

METRICS_LINE = re.compile(r"metrics and health on (http://[^ ]+)")


def readline_within(stream: IO[str], timeout: float) -> str:
    """One line from a child's pipe, or "" after ``timeout`` (the reader thread is a daemon)."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return ""


def metrics_url(server: ServerProcess, timeout: float = 20.0) -> str:
    """The metrics listener's base URL, from the line the server prints after its listeners."""
    assert server.proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        line = readline_within(server.proc.stdout, left)
        seen.append(line)
        match = METRICS_LINE.search(line)
        if match:
            return match.group(1)
        if not line:
            break
    raise AssertionError(f"no metrics listener line on stdout; it had {seen!r}")


def get(url: str, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a GET (errors are answers too)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def readyz_status(base: str) -> int:
    return get(base + "/readyz", timeout=5)[0]


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

    def by_label(self, name: str, label: str) -> dict[str, float]:
        """The samples of ``name`` by the value of their one label ``label``."""
        return {dict(key)[label]: v for (n, key), v in self.samples.items() if n == name}


def scrape(base: str, timeout: float = 10.0) -> Scrape:
    status, headers, body = get(base + "/metrics", timeout)
    assert status == 200, (status, body[:200])
    assert headers.get("Content-Type") == CONTENT_TYPE_LATEST
    return Scrape(body.decode())


def served_2xx(base: str) -> int:
    """Streams a server answered with 2xx (summed over its workers), from its own /metrics."""
    got = scrape(base, timeout=5)
    key = ("h2stream_streams_total", (("status_class", "2xx"),))
    assert key in got.samples, "no h2stream_streams_total in /metrics"
    return int(got.samples[key])


class LimitEvents:
    """The server's ``h2stream_limit_events_total`` by kind, read as the operator would."""

    def __init__(self, base: str) -> None:
        self.base = base

    def limit_events(self) -> dict[str, int]:
        counts = scrape(self.base).by_label("h2stream_limit_events_total", "kind")
        return {kind: int(value) for kind, value in counts.items()}

    def wait_for(self, kind: str, at_least: int = 1, timeout: float = 10) -> int:
        """The count of ``kind`` once it reaches ``at_least``, or at ``timeout`` what it is."""
        return wait_until(
            lambda: self.limit_events().get(kind, 0), timeout, 0.1, until=lambda n: n >= at_least
        )
