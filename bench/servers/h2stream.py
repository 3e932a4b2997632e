"""h2stream itself, from this checkout: zero-copy, copy-path and from-memory variants."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench import probe
from bench.datafiles import FULL_FILES, QUICK_FILES
from bench.scenarios import Load, Scenario
from bench.servers.base import TLS, Context, Launch, Server

REPO = Path(__file__).resolve().parents[2]

# A small body: only the status and content-encoding of the probe matter.
ZSTD_PROBE = "/_h2stream/ndjson?rows=10"
BYTES_PROBE = "/_h2stream/bytes/1024"
FILE_SIZES = {**QUICK_FILES, **FULL_FILES}


class H2Stream(Server):
    name = "h2stream"
    software = "h2stream"
    extra_args: tuple[str, ...] = ()

    def unavailable(self) -> str | None:
        if not (REPO / "h2stream" / "__main__.py").is_file():
            return "h2stream/__main__.py not in this checkout yet"
        return None

    def version(self) -> str:
        # The checkout is what runs, so its commit says more than the package version.
        try:
            rev = subprocess.run(
                ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            rev = ""
        return f"h2stream (checkout {rev or 'without commits'})"

    def launch(self, ctx: Context, proto: str, port: int) -> Launch:
        argv = [sys.executable, "-m", "h2stream", "serve", str(ctx.root)]
        argv += ["--bind", f"127.0.0.1:{port}", *self.extra_args]
        if proto == TLS:
            argv += ["--certfile", str(ctx.cert), "--keyfile", str(ctx.key)]
        # The checkout first on the path, so an older installed h2stream cannot answer instead.
        return Launch(argv, env={"PYTHONPATH": str(ctx.repo)}, cwd=ctx.repo)

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
