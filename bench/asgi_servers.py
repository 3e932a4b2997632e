"""ASGI servers on the same app files: h2stream ``--app`` beside hypercorn, granian and uvicorn.

``h2stream-asgi`` / ``h2stream-asgi-mem`` serve bench/asgi_app.py exactly as the Python peers
do (raw ASGI: B-1k and B-1m from memory compare the servers, not file I/O). The ``-starlette``
variants of h2stream, hypercorn, granian and uvicorn serve bench/asgi_starlette_app.py: a
Starlette FileResponse for the file scenarios (pathsend where announced) and a
StreamingResponse for D.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from bench.scenarios import Load, Scenario
from bench.servers.base import TLS, Context, Launch, Server
from bench.servers.h2stream import H2StreamBaseline, _described
from bench.servers.python_peers import (
    APP_MODULE,
    AsgiPeer,
    Granian,
    Hypercorn,
    UvicornZttp,
    _missing,
)

STARLETTE_SOURCE = Path(__file__).resolve().parent / "asgi_starlette_app.py"
STARLETTE_MODULE = "bench_asgi_starlette_app"
NDJSON_ROWS = {True: 100, False: 10_000}


class H2StreamAsgi(AsgiPeer):
    """h2stream from this checkout serving the peers' raw ASGI app (one process)."""

    name = "h2stream-asgi"
    software = "h2stream"
    slow = False
    app_module = APP_MODULE
    notes = ("--app (ASGI 3), one process, the app file the Python peers serve",)

    def unavailable(self) -> str | None:
        return None

    def version(self) -> str:
        return _described(Path(__file__).resolve().parents[1])

    def checkout(self, ctx: Context) -> Path:
        return ctx.repo

    def launch(self, ctx: Context, proto: str, port: int) -> Launch:
        env = self._prepare(ctx)
        # The checkout first on the path, so an installed h2stream cannot answer instead.
        env["PYTHONPATH"] = str(self.checkout(ctx))
        argv = [sys.executable, "-m", "h2stream", "serve", "--app", f"{self.app_module}:app"]
        argv += ["--bind", f"127.0.0.1:{port}", "--log-level", "warning"]
        if proto == TLS:
            argv += ["--certfile", str(ctx.cert), "--keyfile", str(ctx.key)]
        return Launch(argv, env=env, cwd=ctx.workdir, start_timeout=30.0)


class H2StreamAsgiMemory(H2StreamAsgi):
    name = "h2stream-asgi-mem"
    mode = "memory"
    memory = True


class H2StreamAsgiMemoryBaseline(H2StreamAsgiMemory):
    """The raw ASGI app from memory on another checkout (``BENCH_BASELINE``, as for
    ``h2stream-baseline``): before/after ratios of the ASGI path in one run."""

    name = "h2stream-asgi-mem-baseline"
    notes = ("--app (ASGI 3) from the BENCH_BASELINE checkout",)
    _baseline = H2StreamBaseline()

    def unavailable(self) -> str | None:
        return self._baseline.unavailable()

    def checkout(self, ctx: Context) -> Path:
        return self._baseline.checkout(ctx)

    def version(self) -> str:
        return self._baseline.version()


class StarletteApp(Server):
    """Mixin: serve bench/asgi_starlette_app.py instead of the raw app; D is its NDJSON."""

    app_module = STARLETTE_MODULE

    def _prepare(self, ctx: Context) -> dict[str, str]:
        shutil.copyfile(STARLETTE_SOURCE, ctx.workdir / f"{STARLETTE_MODULE}.py")
        return {"BENCH_ROOT": str(ctx.root), "PYTHONPATH": ""}

    def unavailable(self) -> str | None:
        return _missing("starlette") or super().unavailable()

    def path_for(self, scenario: Scenario, load: Load, caps: set[str]) -> str | None:
        if scenario.needs == "zstd":
            # D as the app's own NDJSON stream (no server compression for ASGI responses).
            quick = load.n <= 100
            return f"/ndjson?rows={NDJSON_ROWS[quick]}"
        if scenario.needs is not None:
            return None
        return "/" + load.file


class H2StreamStarlette(StarletteApp, H2StreamAsgi):
    name = "h2stream-starlette"
    notes = ("--app with a Starlette FileResponse (pathsend: zero-copy on h2c)",)


class HypercornStarlette(StarletteApp, Hypercorn):
    name = "hypercorn-starlette"

    def argv(self, ctx: Context, proto: str, port: int) -> list[str]:
        argv = super().argv(ctx, proto, port)
        return [*argv[:-1], f"{STARLETTE_MODULE}:app"]


class GranianStarlette(StarletteApp, Granian):
    name = "granian-starlette"
    mode = "starlette"  # not "static": the app's FileResponse, not granian's file handler

    def argv(self, ctx: Context, proto: str, port: int) -> list[str]:
        argv = super().argv(ctx, proto, port)
        return [*argv[:-1], f"{STARLETTE_MODULE}:app"]


class UvicornStarlette(StarletteApp, UvicornZttp):
    name = "uvicorn-zttp-starlette"

    def unavailable(self) -> str | None:
        return _missing("starlette", "uvicorn", "zttp")

    def argv(self, ctx: Context, proto: str, port: int) -> list[str]:
        argv = super().argv(ctx, proto, port)
        return [*argv[:-1], f"{STARLETTE_MODULE}:app"]


ASGI_SERVERS: tuple[Server, ...] = (
    H2StreamAsgi(),
    H2StreamAsgiMemory(),
    H2StreamAsgiMemoryBaseline(),
    H2StreamStarlette(),
    HypercornStarlette(),
    GranianStarlette(),
    UvicornStarlette(),
)
