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
    # -- edge: PROXY protocol, per-client limits, refusals ------------------------------
    # How refused connections were answered (limits in limit_events): "http2" (SETTINGS +
    # GOAWAY), "http1" (503), "closed" (no first bytes in time, or too many refusals at once).
    refusal_answers: dict[str, int]
    # PROXY headers accepted, by "v1", "v2" and "local" (LOCAL / UNKNOWN: the peer's address).
    proxy_headers: dict[str, int]
    # Connections closed for their PROXY header, by reason (proxy_header.py, io/edge.py).
    proxy_header_errors: dict[str, int]
    # Addresses the per-client table holds now (a gauge), and idle ones dropped for its cap.
    client_table_entries: int
    client_table_evictions: int
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

# The highest error code RFC 9113 defines (HTTP_1_1_REQUIRED). Codes are 32 bits chosen by the
# peer in RST_STREAM and GOAWAY: counted one by one they would make a metric label per value
# (60,000 codes made /metrics 2.3 MB), so every code above this is counted under UNKNOWN_CODE.
MAX_KNOWN_CODE = 0xD
UNKNOWN_CODE = -1


def count_code(table: dict[int, int], code: int) -> None:
    """One RST_STREAM or GOAWAY with ``code`` in ``table`` (rst_sent_codes and the like)."""
    if not 0 <= code <= MAX_KNOWN_CODE:
        code = UNKNOWN_CODE
    table[code] = table.get(code, 0) + 1
