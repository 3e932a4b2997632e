"""Python ASGI servers (hypercorn, granian, uvicorn+zttp, uvicorn+httptools) serving
bench/asgi_app.py.

Each has a static variant (the app reads the file per request; granian's own Rust static
handler where it has one) and a ``-mem`` variant answering the same bytes from memory.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import sys
from pathlib import Path

from bench.scenarios import Load, Scenario
from bench.servers.base import H1, TLS, WITH_H1, Context, Launch, Server

APP_SOURCE = Path(__file__).resolve().parents[1] / "asgi_app.py"
APP_MODULE = "bench_asgi_app"
# hypercorn's launcher on HTTP/1.1: adds the reason phrase h2load --h1 needs (see the file).
REASON_SOURCE = Path(__file__).resolve().parents[1] / "h11_reason.py"


def _dist_version(*names: str) -> str:
    parts = []
    for name in names:
        try:
            parts.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{name} missing")
    return ", ".join(parts)


def _missing(*modules: str) -> str | None:
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    return f"{', '.join(absent)} not installed (tools/install-peers.sh)" if absent else None


class AsgiPeer(Server):
    slow = True
    mode = "static"
    module = ""

    def unavailable(self) -> str | None:
        return _missing(self.module)

    def version(self) -> str:
        return _dist_version(self.software)

    def _prepare(self, ctx: Context) -> dict[str, str]:
        """Copy the app beside the server's files; the server imports it from its cwd."""
        shutil.copyfile(APP_SOURCE, ctx.workdir / f"{APP_MODULE}.py")
        return {"BENCH_ROOT": str(ctx.root), "BENCH_MODE": self.mode, "PYTHONPATH": ""}

    def argv(self, ctx: Context, proto: str, port: int) -> list[str]:
        raise NotImplementedError

    def launch(self, ctx: Context, proto: str, port: int) -> Launch:
        env = self._prepare(ctx)
        return Launch(self.argv(ctx, proto, port), env=env, cwd=ctx.workdir, start_timeout=30.0)


class Hypercorn(AsgiPeer):
    name = "hypercorn"
    software = "hypercorn"
    module = "hypercorn"
    # Cleartext hypercorn answers HTTP/1.1 and h2c prior knowledge on one port.
    protos = WITH_H1
    notes = (
        "-w 0 (serves in its main process, no supervisor), -k uvloop, "
        "keep_alive_max_requests raised from 1,000 (it would end B-1k's connections early); "
        "on h1 started through bench/h11_reason.py, which adds the reason phrase to its status "
        "lines (h2load --h1 counts 'HTTP/1.1 200 ' with none as failed)",
    )

    def argv(self, ctx: Context, proto: str, port: int) -> list[str]:
        conf = ctx.workdir / "hypercorn.toml"
        conf.write_text("keep_alive_max_requests = 100000000\n")
        argv = [sys.executable, "-m", "hypercorn"]
        if proto == H1:
            launcher = ctx.workdir / REASON_SOURCE.name
            shutil.copyfile(REASON_SOURCE, launcher)
            argv = [sys.executable, str(launcher)]
        argv += ["-w", "0", "-k", "uvloop"]
        argv += ["-b", f"127.0.0.1:{port}", "-c", str(conf), "--log-level", "warning"]
        if proto == TLS:
            argv += ["--certfile", str(ctx.cert), "--keyfile", str(ctx.key)]
        return [*argv, f"{APP_MODULE}:app"]


class HypercornMemory(Hypercorn):
    name = "hypercorn-mem"
    mode = "memory"
    memory = True


class Granian(AsgiPeer):
    """granian with its Rust static-file handler mounted at /static (the app is not called)."""

    name = "granian"
    software = "granian"
    module = "granian"
    # The full counts: the ASGI and B-1k targets are ratios to granian, and a 10,000-request
    # run (0.2 s) under-measures it by 15-25% here (ramp-up is a larger share).
    slow = False
    static_route = "/static"
    protos = WITH_H1
    notes = (
        "--workers 1 --runtime-threads 1 --loop uvloop; its RSS figure adds the "
        "supervisor process to the worker; static files by its own --static-path-mount",
    )

    def argv(self, ctx: Context, proto: str, port: int) -> list[str]:
        http = "1" if proto == H1 else "2"
        argv = [sys.executable, "-m", "granian", "--interface", "asgi", "--http", http]
        argv += ["--workers", "1", "--runtime-threads", "1", "--loop", "uvloop"]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        argv += ["--no-access-log", "--no-ws"]
        if self.mode == "static":
            argv += ["--static-path-route", self.static_route]
            argv += ["--static-path-mount", str(ctx.root), "--static-path-expires", "0"]
        if proto == TLS:
            argv += ["--ssl-certificate", str(ctx.cert), "--ssl-keyfile", str(ctx.key)]
        return [*argv, f"{APP_MODULE}:app"]

    def path_for(self, scenario: Scenario, load: Load, caps: set[str]) -> str | None:
        path = super().path_for(scenario, load, caps)
        if path is None or self.mode != "static":
            return path
        return self.static_route + path


class GranianMemory(Granian):
    name = "granian-mem"
    mode = "memory"
    memory = True


class UvicornZttp(AsgiPeer):
    name = "uvicorn-zttp"
    software = "uvicorn"
    module = "uvicorn"
    notes = ("--http zttp --http2 --loop uvloop, one process, no access log",)

    def unavailable(self) -> str | None:
        return _missing("uvicorn", "zttp")

    def version(self) -> str:
        return _dist_version("uvicorn", "zttp")

    def argv(self, ctx: Context, proto: str, port: int) -> list[str]:
        argv = [sys.executable, "-m", "uvicorn", "--http", "zttp", "--http2", "--loop", "uvloop"]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        argv += ["--no-access-log", "--lifespan", "on"]
        if proto == TLS:
            argv += ["--ssl-certfile", str(ctx.cert), "--ssl-keyfile", str(ctx.key)]
        return [*argv, f"{APP_MODULE}:app"]


class UvicornZttpMemory(UvicornZttp):
    name = "uvicorn-zttp-mem"
    mode = "memory"
    memory = True


class UvicornHttptools(AsgiPeer):
    """uvicorn's HTTP/1.1 stack on httptools (llhttp): the usual production uvicorn."""

    name = "uvicorn-httptools"
    software = "uvicorn"
    module = "uvicorn"
    protos = (H1,)
    notes = ("--http httptools --loop uvloop, one process, no access log (HTTP/1.1 only)",)

    def unavailable(self) -> str | None:
        return _missing("uvicorn", "httptools", "uvloop")

    def version(self) -> str:
        return _dist_version("uvicorn", "httptools")

    def argv(self, ctx: Context, proto: str, port: int) -> list[str]:
        argv = [sys.executable, "-m", "uvicorn", "--http", "httptools", "--loop", "uvloop"]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        argv += ["--no-access-log", "--lifespan", "on"]
        return [*argv, f"{APP_MODULE}:app"]


class UvicornHttptoolsMemory(UvicornHttptools):
    name = "uvicorn-httptools-mem"
    mode = "memory"
    memory = True
