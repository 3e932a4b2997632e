"""``h2stream top``: a live terminal view of a server's ``/metrics``.

Scrapes once per interval (urllib), parses with prometheus_client's parser, and shows rates
between the last two scrapes: throughput by send mode, requests, active connections and
streams, flow-control stalls, resets, CPU and memory. On a terminal it redraws in place;
otherwise (a pipe, a test) it prints one block per refresh.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

CLEAR = "\x1b[H\x1b[2J"
_TTFB = "h2stream_time_to_first_byte_seconds"


@dataclass
class Scrape:
    """One scrape: sample name -> list of (labels, value), and when it was taken."""

    at: float
    samples: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)

    def total(self, name: str, **match: str) -> float:
        """Sum of a sample's values over all label sets matching ``match``."""
        return sum(
            value
            for labels, value in self.samples.get(name, ())
            if all(labels.get(k) == v for k, v in match.items())
        )

    def by_label(self, name: str, label: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for labels, value in self.samples.get(name, ()):
            key = labels.get(label, "")
            out[key] = out.get(key, 0.0) + value
        return out


def parse(text: str, at: float) -> Scrape:
    # Imported here: the CLI builds its parser (and so imports this module) on every start.
    from prometheus_client.parser import text_string_to_metric_families

    scrape = Scrape(at)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            scrape.samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return scrape


def metrics_url(url: str) -> str:
    """Accept ``host:port``, a base URL, or the full /metrics URL."""
    if "://" not in url:
        url = "http://" + url
    scheme, _, rest = url.partition("://")
    if "/" not in rest:
        return f"{scheme}://{rest}/metrics"
    return url


def scrape(url: str, timeout: float) -> Scrape:
    # Here, not at import: the CLI imports this module for its arguments in every process,
    # and urllib.request (with http.client and email) is 3.4 MB of each server's RSS.
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode("utf-8")
    return parse(text, time.monotonic())


def _si(value: float, unit: str) -> str:
    for prefix in ("", "K", "M", "G", "T"):
        if abs(value) < 1000 or prefix == "T":
            return f"{value:.1f} {prefix}{unit}" if prefix else f"{value:.0f} {unit}"
        value /= 1000
    return f"{value:.1f} {unit}"  # pragma: no cover


def _bytes(value: float) -> str:
    for prefix in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or prefix == "TiB":
            return f"{value:.1f} {prefix}" if prefix != "B" else f"{value:.0f} B"
        value /= 1024
    return f"{value:.1f} B"  # pragma: no cover


def render(url: str, now: Scrape, before: Scrape | None) -> str:
    """One screen of figures; rates need ``before`` (the previous scrape)."""
    span = now.at - before.at if before is not None else 0.0

    def rate(name: str, fmt: Callable[[float], str], **match: str) -> str:
        if before is None or span <= 0:
            return "-"
        return fmt(max(0.0, now.total(name, **match) - before.total(name, **match)) / span)

    def total(name: str) -> str:
        return f"{now.total(name):.0f}"

    def per_second(v: float) -> str:
        return _si(v, "/s")

    def bytes_per_second(v: float) -> str:
        return _bytes(v) + "/s"

    body = "h2stream_response_body_bytes_total"
    by_mode = "  ".join(
        f"{mode} {rate(body, bytes_per_second, mode=mode)}"
        for mode in sorted(now.by_label(body, "mode"))
    )
    statuses = "  ".join(
        f"{k} {v:.0f}"
        for k, v in now.by_label("h2stream_streams_total", "status_class").items()
        if v
    )
    ttfb = "-"
    if before is not None:
        count = now.total(f"{_TTFB}_count") - before.total(f"{_TTFB}_count")
        seconds = now.total(f"{_TTFB}_sum") - before.total(f"{_TTFB}_sum")
        ttfb = f"{seconds / count * 1000:.2f} ms" if count > 0 else "-"
    requests = "h2stream_streams_opened_total"
    stalls = "h2stream_flow_control_stalls_total"
    stall_seconds = "h2stream_flow_control_stall_seconds_total"
    rst_sent, rst_received = "h2stream_rst_stream_sent_total", "h2stream_rst_stream_received_total"
    cpu = rate("process_cpu_seconds_total", lambda v: f"{v * 100:.0f}%")
    when = f"(last {span:.1f} s)" if before else "(rates from the next refresh)"
    lines = [
        f"h2stream top  {url}  {time.strftime('%H:%M:%S')}  {when}",
        "",
        f"throughput    {rate(body, bytes_per_second):>14}   {by_mode}",
        f"requests      {rate(requests, per_second):>14}   total {total(requests)}   {statuses}",
        f"uploads       {rate('h2stream_request_body_bytes_total', bytes_per_second):>14}",
        f"active        connections {total('h2stream_connections_active')}"
        f"   streams {total('h2stream_streams_active')}"
        f"   accepted {total('h2stream_connections_accepted_total')}",
        f"ttfb (mean)   {ttfb:>14}",
        f"stalls        {rate(stalls, per_second):>14}   total {total(stalls)}"
        f"   waiting {rate(stall_seconds, lambda v: f'{v:.2f}')} stream-seconds/s",
        f"resets sent   {rate(rst_sent, per_second):>14}   total {total(rst_sent)}"
        f"   received {rate(rst_received, per_second)} (total {total(rst_received)})",
        f"goaway        sent {total('h2stream_goaway_sent_total')}"
        f"   received {total('h2stream_goaway_received_total')}"
        f"   limit events {total('h2stream_limit_events_total')}",
        f"memory        {_bytes(now.total('process_resident_memory_bytes')):>14}"
        f"   cpu {cpu}   fds {total('process_open_fds')}",
    ]
    return "\n".join(lines) + "\n"


def run(
    url: str,
    interval: float = 1.0,
    iterations: int | None = None,
    out: TextIO = sys.stdout,
    redraw: bool | None = None,
) -> int:
    """Refresh every ``interval`` seconds, ``iterations`` times (forever if None)."""
    url = metrics_url(url)
    redraw = out.isatty() if redraw is None else redraw
    before: Scrape | None = None
    ok = False
    count = 0
    try:
        while iterations is None or count < iterations:
            if count:
                time.sleep(interval)
            count += 1
            try:
                now = scrape(url, timeout=max(2.0, interval * 2))
            except (OSError, ValueError) as exc:  # URLError is an OSError
                screen = f"h2stream top  {url}: cannot scrape: {exc}\n"
                ok = False
            else:
                screen = render(url, now, before)
                before = now
                ok = True
            out.write((CLEAR if redraw else ("\n" if count > 1 else "")) + screen)
            out.flush()
    except KeyboardInterrupt:
        return 0
    return 0 if ok else 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics",
        required=True,
        metavar="URL",
        help="the server's metrics listener: http://HOST:PORT[/metrics] (see --metrics-bind)",
    )
    parser.add_argument(
        "--interval", type=float, default=1.0, metavar="SECONDS", help="refresh period (1 s)"
    )
    parser.add_argument(
        "--iterations", type=int, default=None, metavar="N", help="stop after N refreshes"
    )


def main(args: argparse.Namespace) -> int:
    if args.interval <= 0:
        print("h2stream top: error: --interval must be positive", file=sys.stderr)
        return 2
    return run(args.metrics, args.interval, args.iterations)
