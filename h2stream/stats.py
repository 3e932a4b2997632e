"""Plain integer counters on the hot path; exporters read them at scrape time."""

from __future__ import annotations


class Stats:
    """Process-wide counters. Incremented with ``+=`` only: no locks, no labels, no allocation."""

    __slots__ = (
        "body_bytes_copy",
        "body_bytes_sendfile",
        "connections_accepted",
        "connections_active",
        "flow_control_stall_seconds",
        "flow_control_stalls",
        "goaway_sent",
        "rst_received",
        "rst_sent",
        "streams_active",
        "streams_total",
    )

    body_bytes_copy: int
    body_bytes_sendfile: int
    connections_accepted: int
    connections_active: int
    flow_control_stall_seconds: float
    flow_control_stalls: int
    goaway_sent: int
    rst_received: int
    rst_sent: int
    streams_active: int
    streams_total: int

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def snapshot(self) -> dict[str, int | float]:
        return {name: getattr(self, name) for name in self.__slots__}


# One per process: workers are processes, so no counter is ever shared between threads.
STATS = Stats()
