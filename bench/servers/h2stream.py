"""h2stream itself, from this checkout: zero-copy, copy-path and from-memory variants."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench import probe
from bench.datafiles import FULL_FILES, QUICK_FILES
from bench.scenarios import Load, Scenario
from bench.servers.base import TLS, WITH_H1, Context, Launch, Server

REPO = Path(__file__).resolve().parents[2]

# A small body: only the status and content-encoding of the probe matter.
ZSTD_PROBE = "/_h2stream/ndjson?rows=10"
BYTES_PROBE = "/_h2stream/bytes/1024"
FILE_SIZES = {**QUICK_FILES, **FULL_FILES}


class H2Stream(Server):
    name = "h2stream"
    software = "h2stream"
    extra_args: tuple[str, ...] = ()
    # Every listener tells HTTP/1.1 from HTTP/2 by its first bytes: the same argv serves both.
    protos = WITH_H1

    def unavailable(self) -> str | None:
        if not (REPO / "h2stream" / "__main__.py").is_file():
            return "h2stream/__main__.py not in this checkout yet"
        return None

    def checkout(self, ctx: Context) -> Path:
        """The source tree this variant runs."""
        return ctx.repo

    def version(self) -> str:
        return _described(REPO)

    def launch(self, ctx: Context, proto: str, port: int) -> Launch:
        repo = self.checkout(ctx)
        argv = [sys.executable, "-m", "h2stream", "serve", str(ctx.root)]
        argv += ["--bind", f"127.0.0.1:{port}", *self.extra_args]
        if proto == TLS:
            argv += ["--certfile", str(ctx.cert), "--keyfile", str(ctx.key)]
        # The checkout first on the path, so an older installed h2stream cannot answer instead.
        return Launch(argv, env={"PYTHONPATH": str(repo)}, cwd=repo)

    def capabilities(self, base_url: str) -> set[str]:
        caps = set()
        status, headers = probe.get(base_url + ZSTD_PROBE, ("accept-encoding: zstd",))
        if status == 200 and headers.get("content-encoding") == "zstd":
            caps.add("zstd")
        if probe.get(base_url + BYTES_PROBE)[0] == 200:
            caps.add("bytes")
        return caps


class H2StreamNoSendfile(H2Stream):
    name = "h2stream-nosendfile"
    extra_args = ("--no-sendfile",)
    slow = True
    notes = ("--no-sendfile: the bounded copy path on h2c too (TLS always copies)",)


class H2StreamMemory(H2Stream):
    """The same bytes from memory (GET /_h2stream/bytes/N), once the core has that endpoint."""

    name = "h2stream-mem"
    memory = True
    slow = True

    def required(self) -> str | None:
        return "bytes"

    def path_for(self, scenario: Scenario, load: Load, caps: set[str]) -> str | None:
        if scenario.needs is not None or not scenario.fits_memory:
            return None
        return f"/_h2stream/bytes/{FILE_SIZES[load.file]}"


class H2StreamBaseline(H2Stream):
    """Another checkout of h2stream (an older commit) beside this one, for before/after ratios
    in one run: ``git worktree add /tmp/h2stream-before REV`` and
    ``BENCH_BASELINE=/tmp/h2stream-before python -m bench --servers h2stream,h2stream-baseline``.
    """

    name = "h2stream-baseline"
    # The same loads as this checkout: the ratio between the two is the point.

    def _path(self) -> Path | None:
        value = os.environ.get("BENCH_BASELINE")
        return Path(value).resolve() if value else None

    def unavailable(self) -> str | None:
        path = self._path()
        if path is None:
            return "set BENCH_BASELINE to another checkout of h2stream"
        if not (path / "h2stream" / "__main__.py").is_file():
            return f"BENCH_BASELINE={path} is not an h2stream checkout"
        return None

    def checkout(self, ctx: Context) -> Path:
        path = self._path()
        assert path is not None
        return path

    def version(self) -> str:
        path = self._path()
        return _described(path) if path is not None else "h2stream (no baseline)"


def _described(repo: Path) -> str:
    """The checkout's commit: what runs, so it says more than the package version."""
    try:
        rev = subprocess.run(
            ["git", "-C", str(repo), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        rev = ""
    return f"h2stream (checkout {rev or 'without commits'})"
