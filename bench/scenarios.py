"""The h2load scenarios: what each one requests, how often, and which figure it is judged by."""

from __future__ import annotations

from dataclasses import dataclass, field

MBPS = "MB/s"
RPS = "req/s"
# The protocol name of HTTP/1.1 runs (``h2load --h1``); bench.servers re-exports it.
H1 = "h1"


@dataclass(frozen=True)
class Load:
    """One scenario made concrete for a run: the file, the counts and the h2load flags."""

    file: str
    n: int
    c: int
    m: int
    extra: tuple[str, ...] = ()

    def flags(self) -> list[str]:
        return ["-t", "1", "-n", str(self.n), "-c", str(self.c), "-m", str(self.m), *self.extra]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    metric: str
    full: Load
    quick: Load
    # -n for servers flagged slow (see Server.slow) so one run takes seconds; None: same -n.
    slow_n: int | None = None
    # Small enough for the from-memory variants, which preload only files up to 1 MiB.
    fits_memory: bool = False
    # Needs an endpoint only h2stream has (kept here so the table shows the placeholder).
    needs: str | None = None
    headers: tuple[str, ...] = field(default=())
    # (full, quick) loads over HTTP/1.1; None: the scenario has no HTTP/1.1 form (it measures
    # something only HTTP/2 has: windows, frame sizes, streams multiplexed on one connection).
    h1: tuple[Load, Load] | None = None

    def applies(self, proto: str) -> bool:
        return proto != H1 or self.h1 is not None

    def load(self, quick: bool, slow: bool, proto: str = "") -> Load:
        if proto == H1 and self.h1 is not None:
            # Every server gets the same counts over HTTP/1.1 (no slow_n): its targets compare
            # h2stream with the Python peers at equal -n (hypercorn's B-1k then takes ~20 s).
            return self.h1[1] if quick else self.h1[0]
        base = self.quick if quick else self.full
        if slow and not quick and self.slow_n is not None and self.slow_n < base.n:
            return Load(base.file, self.slow_n, base.c, base.m, base.extra)
        return base


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "A-1g",
        "one 1 GiB download on one stream (h2load's default 1 GiB windows)",
        MBPS,
        full=Load("1g.bin", 1, 1, 1),
        quick=Load("1m.bin", 1, 1, 1),
        h1=(Load("1g.bin", 1, 1, 1), Load("1m.bin", 1, 1, 1)),
    ),
    Scenario(
        "A-1g-w16",
        "A-1g with 64 KiB stream and connection windows (-w 16 -W 16): flow control binds",
        MBPS,
        full=Load("1g.bin", 1, 1, 1, ("-w", "16", "-W", "16")),
        quick=Load("1m.bin", 1, 1, 1, ("-w", "16", "-W", "16")),
    ),
    Scenario(
        "A-1g-f",
        "A-1g with the client allowing 1 MiB frames (-f 1048576); only servers that honour "
        "SETTINGS_MAX_FRAME_SIZE send larger DATA frames",
        MBPS,
        full=Load("1g.bin", 1, 1, 1, ("-f", "1048576")),
        quick=Load("1m.bin", 1, 1, 1, ("-f", "1048576")),
    ),
    Scenario(
        "A-100m",
        "eight 100 MiB downloads, four streams at a time on one connection",
        MBPS,
        full=Load("100m.bin", 8, 1, 4),
        quick=Load("1m.bin", 8, 1, 4),
    ),
    Scenario(
        "A-100m-w16",
        "A-100m with 64 KiB stream and connection windows (-w 16 -W 16): four streams share "
        "one connection's credit",
        MBPS,
        full=Load("100m.bin", 8, 1, 4, ("-w", "16", "-W", "16")),
        quick=Load("1m.bin", 8, 1, 4, ("-w", "16", "-W", "16")),
    ),
    Scenario(
        "B-1k",
        "many small responses: 1 KiB, 10 connections x 100 streams",
        RPS,
        full=Load("1k.bin", 200_000, 10, 100),
        quick=Load("1k.bin", 2_000, 10, 100),
        slow_n=10_000,
        fits_memory=True,
        # HTTP/1.1: one request at a time per connection (-m 1: no pipelining).
        h1=(Load("1k.bin", 100_000, 10, 1), Load("1k.bin", 2_000, 10, 1)),
    ),
    Scenario(
        "B-1m",
        "1 MiB responses, 4 connections x 10 streams",
        RPS,
        full=Load("1m.bin", 2_000, 4, 10),
        quick=Load("64k.bin", 200, 4, 10),
        slow_n=400,
        fits_memory=True,
        h1=(Load("1m.bin", 2_000, 4, 1), Load("64k.bin", 200, 4, 1)),
    ),
    Scenario(
        "C-many",
        "1,000 concurrent 1 MiB streams over 10 connections (servers' stream limit queues "
        "the rest in h2load)",
        MBPS,
        full=Load("1m.bin", 1_000, 10, 100),
        quick=Load("64k.bin", 200, 10, 20),
        fits_memory=True,
        # HTTP/1.1 has no streams: 1,000 connections at once, one 1 MiB response each.
        h1=(Load("1m.bin", 1_000, 1_000, 1), Load("64k.bin", 200, 100, 1)),
    ),
    Scenario(
        "D-zstd",
        "NDJSON body compressed with zstd (accept-encoding: zstd); runs once the server "
        "answers /_h2stream/ndjson with content-encoding zstd",
        RPS,
        full=Load("/_h2stream/ndjson?rows=10000", 400, 4, 10),
        quick=Load("/_h2stream/ndjson?rows=100", 100, 2, 10),
        needs="zstd",
        headers=("accept-encoding: zstd",),
    ),
)

BY_NAME = {s.name: s for s in SCENARIOS}


def select(names: str | None) -> list[Scenario]:
    if not names:
        return list(SCENARIOS)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in BY_NAME]
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; known: {', '.join(BY_NAME)}")
    return [BY_NAME[n] for n in wanted]
