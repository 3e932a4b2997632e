"""Per-connection abuse accounting: flood budgets, header-block caps and the fd budget.

h2 counts none of the known HTTP/2 floods, so each connection carries a :class:`FloodLimits`
that :class:`h2stream.core.h2conn.ServerConnection` feeds from its frame dispatch. A frame that
costs us work but carries no request or payload (PING, SETTINGS, PRIORITY, a WINDOW_UPDATE with
a tiny increment, a WINDOW_UPDATE or RST_STREAM for a stream that is gone, an empty or tiny
DATA frame, an empty HEADERS, an unknown extension frame) is one integer increment
and one comparison; only when a budget is exceeded is the clock read, and a budget exceeded
within one window raises :class:`FloodError`, which h2 turns into GOAWAY(ENHANCE_YOUR_CALM)
exactly as it does for its own protocol errors.

Resets (rapid reset, CVE-2023-44487) are judged against the requests the peer opened, as h2o
does: a connection may reset up to half of its requests plus ``reset_budget`` more. Requests
are counted as streams open (never inferred from stream ids, which the client chooses), and
the resets a client provokes from us (a stream's flow-control overflow, DATA on a half-closed
stream, a malformed request: the "MadeYouReset" class) draw on the same budget as its own.

:class:`~h2stream.core.h2conn.LimitedFrameBuffer` (the h2 adapter's frame buffer) caps a header
block (HEADERS + CONTINUATION) in raw bytes and in frames while it is being collected, so a
CONTINUATION flood (CVE-2024-27316 family) ends the connection before the block grows; it raises
the typed errors defined here. The decoded size is capped by hpack itself
(SETTINGS_MAX_HEADER_LIST_SIZE), which h2 reports as a DenialOfServiceError.

Every limit that fires is counted in ``STATS.limit_events`` under its kind.
"""

from __future__ import annotations

import logging
import resource
import time
from typing import TYPE_CHECKING

import h2.errors
import h2.exceptions
from hyperframe.frame import GoAwayFrame, SettingsFrame

from h2stream.core.stats import STATS

if TYPE_CHECKING:
    from h2stream.config import Config

log = logging.getLogger("h2stream.limits")

# Flood kinds: indexes into FloodLimits.counts, and their names in STATS.limit_events.
PING, SETTINGS, PRIORITY, WINDOW_UPDATE, EMPTY = range(5)
FLOOD_KINDS = (
    "ping_flood",
    "settings_flood",
    "priority_flood",
    "window_update_flood",
    "empty_frame_flood",
)
# A WINDOW_UPDATE smaller than this is "small": the data-dribble attack (CVE-2019-9511) makes a
# server cut tiny DATA frames with them. Real clients replenish by at least a few KiB (nghttp2
# when half a window is used, Go from 4 KiB), so only small ones are budgeted: a fast download
# acked frame by frame is never mistaken for a flood.
SMALL_WINDOW_UPDATE = 1024
# A DATA frame (without END_STREAM) smaller than this carries too little for its frame's work:
# not even a gRPC message prefix (5 bytes). Empty and tiny ones share the EMPTY budget.
TINY_DATA = 5
# Budgets are per this many seconds.
WINDOW_SECONDS = 1.0

# The fd budget (WorkerBudget): what is left of RLIMIT_NOFILE after FD_RESERVE (listeners, the
# loop, logs) is shared out as this many fds per connection: its socket, the socket's duplicate
# for sendfile, and two streams' files on average.
FDS_PER_CONNECTION = 4
FD_RESERVE = 64
# Raising the soft RLIMIT_NOFILE to the hard one is free (Go does it at startup); this caps it.
FD_SOFT_MAX = 1 << 20


def _refusal(code: int = h2.errors.ErrorCodes.NO_ERROR, why: bytes = b"connection limit") -> bytes:
    settings = SettingsFrame(0)
    goaway = GoAwayFrame(0)
    goaway.last_stream_id = 0
    goaway.error_code = code
    goaway.additional_data = why
    return settings.serialize() + goaway.serialize()


# What an HTTP/2 connection over --max-connections gets before it is closed: our (empty)
# SETTINGS, as the server preface must come first, then GOAWAY(NO_ERROR) with last stream 0:
# "nothing of yours was processed, retry elsewhere".
REFUSAL = _refusal()
# Over a per-client limit the client itself is the load: ENHANCE_YOUR_CALM, so that a client
# which retries at once on NO_ERROR (Go's transport does) does not turn a refusal into a loop.
CALM = h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
CLIENT_REFUSALS = {
    "client_connections": _refusal(CALM, b"client connection limit"),
    "client_rate": _refusal(CALM, b"client connection rate"),
}


def http2_refusal(kind: str) -> bytes:
    """SETTINGS + GOAWAY for a connection refused by limit ``kind`` (nothing was processed)."""
    return CLIENT_REFUSALS.get(kind, REFUSAL)


def http1_refusal(retry_after: int) -> bytes:
    """The same refusal for HTTP/1.x: 503, when to come back, and a close."""
    body = b"Too many connections: try again later.\n"
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Server: h2stream\r\n"
        f"Retry-After: {retry_after}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


def limit_event(kind: str) -> None:
    """Count one limit that fired (a dict increment: never on a per-frame path)."""
    events = STATS.limit_events
    events[kind] = events.get(kind, 0) + 1


class FloodError(h2.exceptions.DenialOfServiceError):
    """A flood budget was exceeded: h2 answers GOAWAY(ENHANCE_YOUR_CALM) and we close."""

    error_code = h2.errors.ErrorCodes.ENHANCE_YOUR_CALM

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class FloodLimits:
    """One connection's flood counters and their budgets (all from Config)."""

    __slots__ = ("budgets", "counts", "opened", "reset_budget", "resets", "since")

    def __init__(self, config: Config) -> None:
        self.budgets = (
            config.max_pings_per_second,
            config.max_settings_per_second,
            config.max_priority_per_second,
            config.max_small_window_updates_per_second,
            config.max_empty_frames_per_second,
        )
        self.counts = [0, 0, 0, 0, 0]
        self.resets = 0
        # Streams the peer opened (h2conn counts them as they are created).
        self.opened = 0
        self.reset_budget = config.reset_budget
        self.since = time.monotonic()

    def hit(self, kind: int) -> None:
        """One more frame of ``kind``: the per-frame cost is this increment and compare."""
        counts = self.counts
        counts[kind] += 1
        if counts[kind] > self.budgets[kind]:
            self._over(kind)

    def _over(self, kind: int) -> None:
        now = time.monotonic()
        if now - self.since >= WINDOW_SECONDS:
            # The budget was spread over more than one window: start a new window.
            self.since = now
            counts = self.counts
            for index in range(len(counts)):
                counts[index] = 0
            counts[kind] = 1
            return
        name = FLOOD_KINDS[kind]
        self._fire(name)

    def data_sent(self, frames: int) -> None:
        """We sent ``frames`` DATA frames: a peer may answer each with a stream and a
        connection WINDOW_UPDATE (HAProxy does, with small increments), or, for a stream it
        cancelled, with RST_STREAM(STREAM_CLOSED), so each is credit against the
        WINDOW_UPDATE budget (small updates, and updates or resets for streams that are
        gone). A flood is answers to DATA nobody sent.

        One PING per turn of DATA is credited too: gRPC clients (grpc-go's bandwidth
        estimator) ping as data arrives, faster than any fixed per-second budget on a fast
        stream. Both credits are banked up to one second's budget, so a peer cannot save up
        for a flood by downloading first (after a 100 MiB download, 12,000 one-byte updates
        would otherwise pass unchecked)."""
        counts = self.counts
        budgets = self.budgets
        credit = counts[WINDOW_UPDATE] - 2 * frames
        floor = -budgets[WINDOW_UPDATE]
        counts[WINDOW_UPDATE] = credit if credit > floor else floor
        if counts[PING] > -budgets[PING]:
            counts[PING] -= 1

    def peer_reset(self) -> None:
        """A RST_STREAM from the peer for a stream still open."""
        self.resets += 1
        if self.resets > self.reset_budget + self.opened // 2:
            self._fire("rapid_reset")

    def provoked_reset(self) -> None:
        """A reset the peer made us send (its stream broke a rule): same budget as its own."""
        self.resets += 1
        if self.resets > self.reset_budget + self.opened // 2:
            self._fire("provoked_reset")

    def _fire(self, name: str) -> None:
        limit_event(name)
        log.info("flood (%s): GOAWAY(ENHANCE_YOUR_CALM)", name)
        raise FloodError(name)


class HeaderBlockError(h2.exceptions.DenialOfServiceError):
    """A header block outgrew its cap in raw bytes or frames."""

    error_code = h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


class HeaderFieldsError(HeaderBlockError):
    """A header block with more fields than ``max_header_fields``. Decoding stops there, so
    the HPACK state can no longer be trusted: a connection error (RFC 9113 section 4.3),
    GOAWAY(ENHANCE_YOUR_CALM) as for the other header-block caps."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} header fields in one block")
        limit_event("header_fields")
        log.info("header block over %d fields: GOAWAY(ENHANCE_YOUR_CALM)", limit)


class ContinuationLimitError(h2.exceptions.ProtocolError):
    """h2's own cap of 64 CONTINUATION frames in one header block (reached only when
    ``max_header_block_frames`` is set higher): PROTOCOL_ERROR, as h2 answers it."""


def note_protocol_error(exc: h2.exceptions.ProtocolError) -> None:
    """Count the limits h2 and hpack enforce themselves (ours count when they fire)."""
    if isinstance(exc, FloodError | HeaderBlockError):
        return
    if isinstance(exc, h2.exceptions.DenialOfServiceError):
        # hpack's decoded-size cap (SETTINGS_MAX_HEADER_LIST_SIZE): an HPACK bomb.
        limit_event("header_list_size")
    elif isinstance(exc, ContinuationLimitError):
        limit_event("header_block_frames")


class WorkerBudget:
    """A worker's share of RLIMIT_NOFILE, set once by its server at start (unlimited until
    then). The server's worker context holds it; sessions read :attr:`streams`.

    A connection holds two fds (its socket and the duplicate used for sendfile) and a stream
    at most one (its file), so with ``connections`` and ``streams`` both capped the process
    can never run out of fds: no accept() meets EMFILE (libuv would then accept and drop
    connections unanswered), and a stream past the budget is refused (REFUSED_STREAM) before
    it opens a file.
    """

    __slots__ = ("connections", "streams")

    def __init__(self) -> None:
        self.connections = 1 << 30
        self.streams = 1 << 30


def set_fd_budget(config: Config, budget: WorkerBudget) -> WorkerBudget:
    """Raise the soft RLIMIT_NOFILE to the hard one, and share it out into ``budget`` (see
    WorkerBudget): a quarter of what is left after FD_RESERVE goes to connections (two fds
    each, so half the fds) and the other half to streams, unless ``--max-connections`` asks
    for fewer."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = FD_SOFT_MAX if hard == resource.RLIM_INFINITY else min(hard, FD_SOFT_MAX)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        soft = FD_SOFT_MAX
    usable = max(FDS_PER_CONNECTION, soft - FD_RESERVE)
    by_fds = usable // FDS_PER_CONNECTION
    connections = min(config.max_connections, by_fds) if config.max_connections else by_fds
    budget.connections = connections
    budget.streams = max(1, usable - 2 * connections)
    return budget
