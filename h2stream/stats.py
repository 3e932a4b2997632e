"""Plain integer counters on the hot path; exporters read them at scrape time.

Add a counter by adding an annotated line below: the slots and zeroing follow from the
annotations.
"""

from __future__ import annotations

from typing import ClassVar


class Stats:
    """Process-wide counters. Incremented with ``+=`` only: no locks, no labels, no allocation."""

    # -- core -----------------------------------------------------------------------------
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
    # -- streaming, compression, uploads (issue 4) -------------------------------------------
    # -- observability (issue 5) -----------------------------------------------------------
    # -- hardening (issue 6) ---------------------------------------------------------------
    # -- operations (issue 7) --------------------------------------------------------------

    FIELDS: ClassVar[tuple[str, ...]]

    def __init__(self) -> None:
        for name in self.FIELDS:
            setattr(self, name, 0)

    def snapshot(self) -> dict[str, int | float]:
        return {name: getattr(self, name) for name in self.FIELDS}


Stats.FIELDS = tuple(name for name in Stats.__annotations__ if name != "FIELDS")

# One per process: workers are processes, so no counter is ever shared between threads.
STATS = Stats()
