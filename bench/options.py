"""The choices of one run, as parsed from the command line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.scenarios import Scenario
from bench.servers import Server


@dataclass(frozen=True)
class Options:
    quick: bool
    scenarios: list[Scenario]
    servers: list[Server]
    protos: list[str]
    rounds: int
    reference: str
    out: Path
    data: Path
    save_table: bool
    raw: bool
    # Upper bound for one h2load run and for the whole run, in seconds.
    run_timeout: float
    # Seconds without a byte received after which an h2load run is called stalled and killed.
    stall: float
    budget: float
    chart: bool
    # --pin: servers on CPU 0, h2load on CPU 1 (None: wherever the scheduler puts them).
    server_cpus: frozenset[int] | None = None
    client_cpus: frozenset[int] | None = None
