"""Plain integer counters on the hot path; exporters read them at scrape time.

Add a counter by adding an annotated line below: the slots and zeroing follow from the
annotations.
"""

from __future__ import annotations

from typing import Any, ClassVar


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
    # -- streaming, compression, uploads -------------------------------------------------
    # Compressed body bytes framed, by coding (not in body_bytes_copy: the modes are disjoint).
    body_bytes_zstd: int
    body_bytes_gzip: int
    # Responses served from a precompressed sibling file (name.zst / name.gz), zero-copy.
    precompressed_responses: int
    # Request bodies refused with 413 (content-length over the limit, or crossing it).
    request_body_too_large: int
    # DATA that disagreed with content-length: stream reset with PROTOCOL_ERROR.
    content_length_mismatch: int
    # -- observability -----------------------------------------------------------------
    # Request body (DATA payload) bytes received, whether an app read them or they were drained.
    request_body_bytes: int
    # Tables keyed by HTTP/2 error code (int) -> count. They change only when a RST_STREAM or
    # GOAWAY goes or comes, never per frame; the plain totals above stay the per-event counters.
    rst_sent_codes: dict[int, int]
    rst_received_codes: dict[int, int]
    goaway_sent_codes: dict[int, int]
    goaway_received_codes: dict[int, int]
    # Limits that fired and floods detected, kind -> count (e.g. "rapid_reset",
    # "ping_flood"; the metric's label). Count with: t[kind] = t.get(kind, 0) + 1
    limit_events: dict[str, int]
    # -- hardening ---------------------------------------------------------------------
    # -- operations --------------------------------------------------------------------
    # -- speed -------------------------------------------------------------------------
    # Polls for a peer's credit (busypoll.py) that found input, and that found none in time.
    busy_poll_hits: int
    busy_poll_misses: int
    # Response body bytes sent from a read-ahead (readahead.py; counted in body_bytes_copy too).
    body_bytes_read_ahead: int

    FIELDS: ClassVar[tuple[str, ...]]
    # The dict-annotated fields: counters keyed by a label (error code, kind).
    TABLES: ClassVar[tuple[str, ...]]

    def __init__(self) -> None:
        for name in self.FIELDS:
            setattr(self, name, 0)
        for name in self.TABLES:
            setattr(self, name, {})

    def snapshot(self) -> dict[str, int | float]:
        return {name: getattr(self, name) for name in self.FIELDS}

    def tables(self) -> dict[str, dict[Any, int]]:
        """Copies of the keyed counters (``TABLES``), for exporters."""
        return {name: dict(getattr(self, name)) for name in self.TABLES}


_KINDS = {
    name: kind for name, kind in Stats.__annotations__.items() if name not in ("FIELDS", "TABLES")
}
Stats.FIELDS = tuple(name for name, kind in _KINDS.items() if not kind.startswith("dict"))
Stats.TABLES = tuple(name for name, kind in _KINDS.items() if kind.startswith("dict"))

# One per process: workers are processes, so no counter is ever shared between threads.
STATS = Stats()
