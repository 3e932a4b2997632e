"""What the runner needs to know about a server: is it there, how to start it, what to ask for."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bench.scenarios import H1, Load, Scenario

H2C = "h2c"
TLS = "tls"
# Servers that also answer HTTP/1.1 (cleartext, ``h2load --h1``) in the harness.
WITH_H1 = (H2C, TLS, H1)


@dataclass(frozen=True)
class Context:
    """Where an instance finds its files: the served root, its own temp dir, the TLS pair."""

    root: Path
    workdir: Path
    repo: Path
    cert: Path | None
    key: Path | None


@dataclass
class Launch:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    # Seconds to wait for the listener: Python servers import a lot before they bind.
    start_timeout: float = 20.0


class Server:
    """One configuration of one peer. Subclasses set the class attributes and ``launch``."""

    name: str = ""
    # Package or binary shown with the version in the results.
    software: str = ""
    # Gets the scenarios' smaller ``slow_n`` (B-1k, B-1m) so one run stays within seconds: the
    # slow peers, and h2stream's secondary variants, which would double its share of the time.
    slow: bool = False
    # Answers from bytes held in memory: only scenarios whose files fit (<= 1 MiB).
    memory: bool = False
    # Settings changed from the server's defaults, and why: printed under the table.
    notes: tuple[str, ...] = ()
    # The protocols this configuration serves in the harness (h2c, tls, h1).
    protos: tuple[str, ...] = (H2C, TLS)

    def unavailable(self) -> str | None:
        """Why this server cannot run here (printed as a note), or None."""
        return None

    def version(self) -> str:
        return "?"

    def launch(self, ctx: Context, proto: str, port: int) -> Launch:
        raise NotImplementedError

    def capabilities(self, base_url: str) -> set[str]:
        """Optional features found by asking the running server (e.g. "zstd")."""
        return set()

    def required(self) -> str | None:
        """A capability without which this variant is skipped (e.g. a from-memory endpoint)."""
        return None

    def path_for(self, scenario: Scenario, load: Load, caps: set[str]) -> str | None:
        """The request path for ``scenario``, or None when it does not apply to this server."""
        if scenario.needs is not None and scenario.needs not in caps:
            return None
        if scenario.needs is not None:
            return load.file
        if self.memory and not scenario.fits_memory:
            return None
        return "/" + load.file


def first_line(argv: list[str]) -> str:
    """The first non-empty line a ``--version``-style command prints on stdout or stderr."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"? ({exc})"
    for line in (done.stdout + "\n" + done.stderr).splitlines():
        if line.strip():
            return line.strip()
    return "?"


def missing_binary(path: str) -> str | None:
    return None if shutil.which(path) else f"{path} not installed"
