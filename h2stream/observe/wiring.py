"""Wires observability into one server: the stream observers (metrics
figures, access log) and the ``--metrics-bind`` listener.

Imported only when ``--access-log`` or ``--metrics-bind`` is given, so a plain server loads
neither prometheus_client nor the observers, and its streams end with no observer call at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from h2stream.config import Config
from h2stream.core.exchange import ExchangeObserver, ExchangeRecord
from h2stream.observe.accesslog import AccessLog

if TYPE_CHECKING:
    from h2stream.observe.metrics import SnapshotPublisher
    from h2stream.observe.metrics_server import MetricsServer


def fan_out(observers: list[ExchangeObserver]) -> ExchangeObserver | None:
    """One observer calling each of ``observers`` (the session holds a single callable)."""
    if not observers:
        return None
    if len(observers) == 1:
        return observers[0]
    first, *rest = observers

    def observe(stream: ExchangeRecord) -> None:
        first(stream)
        for observer in rest:
            observer(stream)

    return observe


class ObservedServer(Protocol):
    """What observability needs of the server it is installed in."""

    config: Config
    draining: bool
    on_stream_end: ExchangeObserver | None


class MetricsListenError(Exception):
    """The metrics listener could not bind; the message is meant for the operator."""


class Observability:
    """What ``--access-log`` and ``--metrics-bind`` add to a server, started and stopped with it.

    The server makes one by default. A worker process of a supervisor (which serves the scrape
    itself) sets ``server.observability = Observability(server, listen=False,
    snapshot_path=...)`` before ``start()``: the worker then counts per-stream figures and
    publishes snapshots for the supervisor to sum, and opens no listener of its own.
    """

    def __init__(
        self,
        server: ObservedServer,
        *,
        listen: bool = True,
        snapshot_path: str | None = None,
        worker: str = "",
    ) -> None:
        self.server = server
        config = server.config
        self.access_log: AccessLog | None = None
        self.metrics: MetricsServer | None = None
        self._listen = listen and config.metrics_bind is not None
        self._publisher: SnapshotPublisher | None = None
        observers: list[ExchangeObserver] = []
        if server.on_stream_end is not None:
            observers.append(server.on_stream_end)
        if config.metrics_bind is not None or snapshot_path is not None:
            from h2stream.observe.metrics import STREAMS, SnapshotPublisher

            observers.append(STREAMS.observe)
            if snapshot_path is not None:
                self._publisher = SnapshotPublisher(snapshot_path, worker)
        if config.access_log is not None:
            self.access_log = AccessLog(config.access_log, config.access_log_format)
            observers.append(self.access_log)
        self._observer = fan_out(observers)

    def install(self) -> None:
        """Open the log and set the stream observer: before any connection is accepted."""
        if self.access_log is not None:
            self.access_log.open()
        self.server.on_stream_end = self._observer
        if self._publisher is not None:
            self._publisher.start()

    async def start_listener(self, announce: Callable[[str], None]) -> None:
        """Start the metrics listener (after the data listeners, so it announces after them)."""
        bind = self.server.config.metrics_bind
        if bind is None or not self._listen:
            return
        from h2stream.observe.metrics import live_source, registry_for
        from h2stream.observe.metrics_server import MetricsServer

        server = self.server
        self.metrics = MetricsServer(
            bind, registry_for(live_source()), ready=lambda: not server.draining
        )
        try:
            url = await self.metrics.start()
        except OSError as exc:
            self.metrics = None
            raise MetricsListenError(
                f"cannot listen on --metrics-bind {bind}: {exc.strerror or exc}"
            ) from exc
        announce(f"h2stream metrics and health on {url} (/metrics /healthz /readyz)")

    async def close(self) -> None:
        """At the end of the drain: /readyz answered 503 until now."""
        if self.metrics is not None:
            await self.metrics.close()
            self.metrics = None
        if self._publisher is not None:
            self._publisher.stop()  # the final snapshot: counters stay in the supervisor's sum
            self._publisher = None
        if self.access_log is not None:
            self.access_log.close()
