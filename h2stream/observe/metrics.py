"""Prometheus metric families, built at scrape time from plain counters.

The hot path only ever does ``STATS.x += n`` (:mod:`h2stream.core.stats`). Per-stream figures that
need more than an increment (status class, time to first byte, duration) are added up by
:data:`STREAMS`, the ``on_stream_end`` observer, in fixed buckets of plain ints. Nothing here
runs per frame.

Everything a scrape reports goes through a :class:`Snapshot`: one process's counters, tables,
histograms and ``psutil`` figures, a plain value that serialises to JSON. With one process the
collector takes a snapshot of the live counters. With several worker processes each worker
publishes its snapshot to a file (:class:`SnapshotPublisher`, atomically, every half second and
at exit) and the scraping process reads them all (:func:`collect_from`): counters and
histograms are summed; gauges (active connections and streams, memory, fds) are summed over
live workers only, so a worker that exited keeps its counts but not its connections.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import gc
import glob
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import h2.errors
import psutil
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from h2stream import __version__
from h2stream.core.exchange import ExchangeRecord
from h2stream.core.stats import STATS
from h2stream.handlers.grpc.stats import GRPC_STATS, KEY_SEPARATOR

log = logging.getLogger("h2stream.metrics")

PREFIX = "h2stream"
# Time to first byte and stream duration, in seconds: from sub-millisecond cache hits on
# loopback to multi-minute downloads of large files.
TTFB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
DURATION_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.05,
    0.1,
    0.5,
    1.0,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
)
STATUS_CLASSES = ("none", "1xx", "2xx", "3xx", "4xx", "5xx")
# Send modes always exported (zero until used), so dashboards need no "absent" handling.
MODES = ("sendfile", "copy", "zstd", "gzip")
# A snapshot older than this is a worker that died without its final publish.
STALE_AFTER = 5.0
PUBLISH_INTERVAL = 0.5


class Histogram:
    """Fixed buckets of plain ints; cumulative only when exported."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        # One count per bound plus the overflow (+Inf) bucket.
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value


class StreamMetrics:
    """Per-stream figures, added up as each stream ends. Its :meth:`observe` is the observer."""

    def __init__(self) -> None:
        self.status_classes = [0] * len(STATUS_CLASSES)
        # Exchanges by HTTP version ("2", "1.1", "1.0"): every listener speaks both.
        self.protocols: dict[str, int] = {}
        self.ttfb = Histogram(TTFB_BUCKETS)
        self.duration = Histogram(DURATION_BUCKETS)

    def observe(self, stream: ExchangeRecord) -> None:
        status = stream.status
        self.status_classes[status // 100 if 100 <= status < 600 else 0] += 1
        protocols = self.protocols
        version = stream.http_version
        protocols[version] = protocols.get(version, 0) + 1
        if stream.first_byte_at:
            self.ttfb.observe(stream.first_byte_at - stream.started)
        self.duration.observe(time.monotonic() - stream.started)


# One per process, like STATS.
STREAMS = StreamMetrics()


def _process_figures() -> dict[str, float]:
    figures: dict[str, float] = {}
    try:
        proc = psutil.Process()
        with proc.oneshot():
            cpu = proc.cpu_times()
            memory = proc.memory_info()
            figures["cpu_seconds"] = cpu.user + cpu.system
            figures["resident_memory_bytes"] = memory.rss
            figures["virtual_memory_bytes"] = memory.vms
            figures["start_time_seconds"] = proc.create_time()
            figures["open_fds"] = proc.num_fds()
        with contextlib.suppress(AttributeError, OSError):
            figures["max_fds"] = proc.rlimit(psutil.RLIMIT_NOFILE)[0]
        for generation, stats in enumerate(gc.get_stats()):
            figures[f"gc_collections_{generation}"] = stats["collections"]
    except (psutil.Error, OSError) as exc:  # never fail a scrape over process figures
        log.debug("process figures unavailable: %s", exc)
    return figures


@dataclass
class Snapshot:
    """Everything one process contributes to a scrape, as plain JSON-able values."""

    worker: str = ""
    pid: int = 0
    # Wall-clock time it was taken (time.time()), to spot workers that died silently.
    taken: float = 0.0
    # True for the last snapshot of a worker that exited: its gauges no longer count.
    final: bool = False
    counters: dict[str, float] = field(default_factory=dict)
    tables: dict[str, dict[str, int]] = field(default_factory=dict)
    status_classes: list[int] = field(default_factory=lambda: [0] * len(STATUS_CLASSES))
    ttfb: list[float] = field(default_factory=lambda: [0] * (len(TTFB_BUCKETS) + 2))
    duration: list[float] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 2))
    process: dict[str, float] = field(default_factory=dict)

    @classmethod
    def take(cls, worker: str = "", final: bool = False) -> Snapshot:
        """This process's figures now."""
        return cls(
            worker=worker,
            pid=os.getpid(),
            taken=time.time(),
            final=final,
            counters=dict(STATS.snapshot()),
            # JSON keys are strings: codes are written as decimal text.
            tables={
                **{
                    name: {str(key): count for key, count in table.items()}
                    for name, table in STATS.tables().items()
                },
                # gRPC calls by method and status, messages and bytes by method.
                **GRPC_STATS.tables(),
                "protocols": dict(STREAMS.protocols),
            },
            status_classes=list(STREAMS.status_classes),
            # Bucket counts, then the sum of observed values as the last element.
            ttfb=[*STREAMS.ttfb.counts, STREAMS.ttfb.total],
            duration=[*STREAMS.duration.counts, STREAMS.duration.total],
            process=_process_figures(),
        )

    def live(self, now: float | None = None) -> bool:
        """Its gauges still describe a running process."""
        now = time.time() if now is None else now
        return not self.final and now - self.taken < STALE_AFTER

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Snapshot:
        data = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})


# Figures that describe the present, not a history: summed over live processes only.
GAUGE_COUNTERS = frozenset({"connections_active", "streams_active", "client_table_entries"})
GAUGE_PROCESS = frozenset({"resident_memory_bytes", "virtual_memory_bytes", "open_fds", "max_fds"})


def _add_list(into: list[Any], values: Sequence[float]) -> None:
    for index, value in enumerate(values[: len(into)]):
        into[index] += value


def merge(snapshots: Sequence[Snapshot]) -> Snapshot:
    """The sum over processes, as one snapshot (see the module docstring for the rules)."""
    if len(snapshots) == 1 and snapshots[0].live():
        return snapshots[0]
    total = Snapshot(taken=time.time())
    start_times = []
    for snap in snapshots:
        alive = snap.live(total.taken)
        for name, value in snap.counters.items():
            if alive or name not in GAUGE_COUNTERS:
                total.counters[name] = total.counters.get(name, 0) + value
        for name, table in snap.tables.items():
            merged = total.tables.setdefault(name, {})
            for key, count in table.items():
                merged[key] = merged.get(key, 0) + count
        _add_list(total.status_classes, snap.status_classes)
        _add_list(total.ttfb, snap.ttfb)
        _add_list(total.duration, snap.duration)
        for name, value in snap.process.items():
            if name == "start_time_seconds":
                start_times.append(value)
            elif alive or name not in GAUGE_PROCESS:
                total.process[name] = total.process.get(name, 0) + value
    if start_times:
        total.process["start_time_seconds"] = min(start_times)
    return total


# -- multi-process publishing ---------------------------------------------------------------


def publish_snapshot(path: str, worker: str = "", final: bool = False) -> None:
    """Write this process's snapshot to ``path`` atomically (write aside, then rename)."""
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as out:
        out.write(Snapshot.take(worker, final).to_json())
    os.replace(temporary, path)


def collect_from(paths: Iterable[str]) -> list[Snapshot]:
    """Read published snapshots; unreadable or half-written files are skipped, not fatal."""
    snapshots = []
    for path in paths:
        try:
            with open(path) as f:
                snapshots.append(Snapshot.from_json(f.read()))
        except (OSError, ValueError, TypeError) as exc:
            log.debug("skipping snapshot %s: %s", path, exc)
    return snapshots


def files_source(pattern: str) -> Callable[[], list[Snapshot]]:
    """A collector source reading every snapshot file matching a glob pattern."""
    return lambda: collect_from(sorted(glob.glob(pattern)))


def live_source(worker: str = "") -> Callable[[], list[Snapshot]]:
    """A collector source for a single process: its own live counters."""
    return lambda: [Snapshot.take(worker)]


class SnapshotPublisher:
    """Publishes this worker's snapshot every ``interval`` seconds and once more at stop."""

    def __init__(self, path: str, worker: str = "", interval: float = PUBLISH_INTERVAL) -> None:
        self.path = path
        self.worker = worker
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._publish(final=False)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self._publish(final=False)

    def _publish(self, final: bool) -> None:
        try:
            publish_snapshot(self.path, self.worker, final)
        except OSError as exc:
            log.warning("cannot publish metrics snapshot to %s: %s", self.path, exc)

    def stop(self) -> None:
        """Final publish: counters stay in the sum, gauges leave it."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._publish(final=True)


# -- the collector ----------------------------------------------------------------------------


def _code_name(key: str) -> str:
    try:
        return h2.errors.ErrorCodes(int(key)).name
    except ValueError:
        # Codes beyond RFC 9113's are counted as one (core.stats.count_code): one label.
        return "UNKNOWN"


def _versions() -> dict[str, str]:
    import h2

    try:
        import uvloop

        uvloop_version = uvloop.__version__
    except ImportError:
        uvloop_version = ""
    return {
        "version": __version__,
        "python": ".".join(map(str, sys.version_info[:3])),
        "h2": h2.__version__,
        "uvloop": uvloop_version,
    }


def _histogram(
    name: str, help_text: str, bounds: Sequence[float], values: Sequence[float]
) -> HistogramMetricFamily:
    counts, total = values[:-1], values[-1]
    buckets = []
    running = 0.0
    for bound, count in zip((*bounds, float("inf")), counts, strict=False):
        running += count
        buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
    family = HistogramMetricFamily(name, help_text)
    family.add_metric([], buckets, total)
    return family


class H2StreamCollector(Collector):
    """Turns snapshots (live, or published by workers) into metric families at scrape time."""

    def __init__(self, source: Callable[[], list[Snapshot]]) -> None:
        self.source = source
        self.versions = _versions()

    def collect(self) -> Iterable[Metric]:
        snapshots = self.source()
        total = merge(snapshots)
        yield from self.families(total)
        if len(snapshots) > 1:
            yield from self.worker_families(snapshots)

    def families(self, snap: Snapshot) -> Iterable[Metric]:
        c = snap.counters
        t = snap.tables

        def counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(f"{PREFIX}_{name}", help_text, value=value)

        def gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"{PREFIX}_{name}", help_text, value=value)

        yield counter(
            "connections_accepted", "Connections accepted.", c.get("connections_accepted", 0)
        )
        yield gauge("connections_active", "Connections open now.", c.get("connections_active", 0))
        yield gauge("streams_active", "Streams open now.", c.get("streams_active", 0))
        yield counter("streams_opened", "Streams opened (requests).", c.get("streams_total", 0))
        streams = CounterMetricFamily(
            f"{PREFIX}_streams",
            "Streams ended, by response status class (none: reset before a response).",
            labels=["status_class"],
        )
        for label, count in zip(STATUS_CLASSES, snap.status_classes, strict=False):
            streams.add_metric([label], count)
        yield streams
        by_protocol = CounterMetricFamily(
            f"{PREFIX}_exchanges_by_protocol",
            "Requests ended (completed or reset), by protocol: HTTP/2, HTTP/1.1, HTTP/1.0.",
            labels=["protocol"],
        )
        protocols = snap.tables.get("protocols", {})
        for version in ("2", "1.1", "1.0"):
            by_protocol.add_metric([f"HTTP/{version}"], protocols.get(version, 0))
        yield by_protocol
        body = CounterMetricFamily(
            f"{PREFIX}_response_body_bytes",
            "Response body bytes framed, by how they left (sendfile: zero-copy).",
            labels=["mode"],
        )
        for mode in MODES:
            body.add_metric([mode], c.get(f"body_bytes_{mode}", 0))
        yield body
        yield counter(
            "request_body_bytes", "Request body bytes received.", c.get("request_body_bytes", 0)
        )
        yield counter(
            "flow_control_stalls",
            "Times a stream with data to send was parked on a zero stream window.",
            c.get("flow_control_stalls", 0),
        )
        yield counter(
            "flow_control_stall_seconds",
            "Seconds streams spent parked on a zero stream window.",
            c.get("flow_control_stall_seconds", 0),
        )
        yield counter(
            "read_ahead_bytes",
            "Response body bytes sent from a read-ahead while flow control binds.",
            c.get("body_bytes_read_ahead", 0),
        )
        polls = CounterMetricFamily(
            f"{PREFIX}_busy_polls",
            "Polls for a peer's credit, by whether input came within --busy-poll-us.",
            labels=["result"],
        )
        polls.add_metric(["hit"], c.get("busy_poll_hits", 0))
        polls.add_metric(["miss"], c.get("busy_poll_misses", 0))
        yield polls
        yield self._by_code(
            "rst_stream_sent", "RST_STREAM frames sent.", t, "rst_sent_codes", c.get("rst_sent")
        )
        yield self._by_code(
            "rst_stream_received",
            "RST_STREAM frames received.",
            t,
            "rst_received_codes",
            c.get("rst_received"),
        )
        yield self._by_code(
            "goaway_sent", "GOAWAY frames sent.", t, "goaway_sent_codes", c.get("goaway_sent")
        )
        yield self._by_code(
            "goaway_received", "GOAWAY frames received.", t, "goaway_received_codes", None
        )
        limits = CounterMetricFamily(
            f"{PREFIX}_limit_events",
            "Limits that fired and floods detected (the stream or connection was ended).",
            labels=["kind"],
        )
        for kind, count in sorted(t.get("limit_events", {}).items()):
            limits.add_metric([kind], count)
        yield limits
        yield from self.edge_families(c, t)
        yield _histogram(
            f"{PREFIX}_time_to_first_byte_seconds",
            "From request headers to the first response body byte framed.",
            TTFB_BUCKETS,
            snap.ttfb,
        )
        yield _histogram(
            f"{PREFIX}_stream_duration_seconds",
            "From request headers to the end of the stream (completed or reset).",
            DURATION_BUCKETS,
            snap.duration,
        )
        info = GaugeMetricFamily(
            f"{PREFIX}_build_info",
            "Versions of h2stream and what it runs on.",
            labels=list(self.versions),
        )
        info.add_metric(list(self.versions.values()), 1)
        yield info
        yield from self.process_families(snap.process)
        yield from self.grpc_families(t)

    @staticmethod
    def edge_families(
        counters: dict[str, float], tables: dict[str, dict[str, int]]
    ) -> Iterable[Metric]:
        """Refusals at accept, PROXY headers, and the per-client table (io/edge.py)."""
        for name, label, keys, help_text in (
            (
                "refusal_answers",
                "answer",
                ("http2", "http1", "closed"),
                "Connections refused at accept (limit_events names the limit), by answer: "
                "SETTINGS + GOAWAY, 503, or closed unanswered.",
            ),
            (
                "proxy_headers",
                "version",
                ("v1", "v2", "local"),
                "PROXY protocol headers accepted (local: LOCAL or UNKNOWN, no client address).",
            ),
            (
                "proxy_header_errors",
                "reason",
                (),
                "Connections closed for their PROXY header (missing, malformed, oversized, "
                "unsupported, truncated, empty, timeout, untrusted).",
            ),
        ):
            family = CounterMetricFamily(f"{PREFIX}_{name}", help_text, labels=[label])
            table = tables.get(name, {})
            for key in sorted({*keys, *table}):
                family.add_metric([key], table.get(key, 0))
            yield family
        yield GaugeMetricFamily(
            f"{PREFIX}_client_table_entries",
            "Client addresses the per-client limits track now (connected, or within the LRU).",
            value=counters.get("client_table_entries", 0),
        )
        yield CounterMetricFamily(
            f"{PREFIX}_client_table_evictions",
            "Idle client addresses dropped to keep the per-client table within its size.",
            value=counters.get("client_table_evictions", 0),
        )

    @staticmethod
    def grpc_families(tables: dict[str, dict[str, int]]) -> Iterable[Metric]:
        """gRPC calls per method by status, and messages and bytes per method each way."""
        calls = CounterMetricFamily(
            f"{PREFIX}_grpc_calls",
            "gRPC calls ended, by method and status.",
            labels=["method", "code"],
        )
        for key, count in sorted(tables.get("grpc_calls", {}).items()):
            method, _, code = key.rpartition(KEY_SEPARATOR)
            calls.add_metric([method, code], count)
        yield calls
        for unit, help_text in (("messages", "gRPC messages"), ("bytes", "gRPC message bytes")):
            family = CounterMetricFamily(
                f"{PREFIX}_grpc_{unit}",
                f"{help_text} by method and direction (in: requests, out: replies).",
                labels=["method", "direction"],
            )
            for direction in ("in", "out"):
                for method, count in sorted(tables.get(f"grpc_{unit}_{direction}", {}).items()):
                    family.add_metric([method, direction], count)
            yield family

    @staticmethod
    def _by_code(
        name: str,
        help_text: str,
        tables: dict[str, dict[str, int]],
        table: str,
        total: float | None,
    ) -> CounterMetricFamily:
        family = CounterMetricFamily(f"{PREFIX}_{name}", help_text, labels=["code"])
        counted = 0
        for key, count in sorted(tables.get(table, {}).items(), key=lambda kv: int(kv[0])):
            family.add_metric([_code_name(key)], count)
            counted += count
        if total is not None and total > counted:
            # Frames counted in the plain total by a path that does not record the code.
            family.add_metric(["unknown"], total - counted)
        return family

    @staticmethod
    def process_families(process: dict[str, float]) -> Iterable[Metric]:
        """The standard ``process_*`` families (summed over workers when there are several)."""
        described = (
            ("cpu_seconds", "Total user and system CPU time spent in seconds.", True),
            ("resident_memory_bytes", "Resident memory size in bytes.", False),
            ("virtual_memory_bytes", "Virtual memory size in bytes.", False),
            ("open_fds", "Number of open file descriptors.", False),
            ("max_fds", "Maximum number of open file descriptors.", False),
            ("start_time_seconds", "Start time of the process since unix epoch in seconds.", False),
        )
        for name, help_text, is_counter in described:
            if name not in process:
                continue
            kind = CounterMetricFamily if is_counter else GaugeMetricFamily
            yield kind(f"process_{name}", help_text, value=process[name])
        if "gc_collections_0" in process:
            # As prometheus_client's own GC collector names it (it would describe only the
            # scraping process): how often --gc-threshold lets the collector run.
            collections = CounterMetricFamily(
                "python_gc_collections",
                "Garbage collections, by generation.",
                labels=["generation"],
            )
            for generation in range(3):
                collections.add_metric(
                    [str(generation)], process.get(f"gc_collections_{generation}", 0)
                )
            yield collections

    @staticmethod
    def worker_families(snapshots: Sequence[Snapshot]) -> Iterable[Metric]:
        """Per-worker figures that are worth a label: load balance and memory per process."""
        now = time.time()
        live = [s for s in snapshots if s.live(now)]
        connections = GaugeMetricFamily(
            f"{PREFIX}_worker_connections_active",
            "Connections open now, per worker process.",
            labels=["worker"],
        )
        memory = GaugeMetricFamily(
            f"{PREFIX}_worker_resident_memory_bytes",
            "Resident memory per worker process.",
            labels=["worker"],
        )
        for snap in live:
            name = snap.worker or str(snap.pid)
            connections.add_metric([name], snap.counters.get("connections_active", 0))
            memory.add_metric([name], snap.process.get("resident_memory_bytes", 0))
        yield connections
        yield memory


def registry_for(source: Callable[[], list[Snapshot]]) -> CollectorRegistry:
    """A registry holding only our collector (not prometheus_client's own process collector,
    which would describe only the scraping process)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(H2StreamCollector(source))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of everything in ``registry``."""
    return generate_latest(registry)
