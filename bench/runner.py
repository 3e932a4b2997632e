"""The run itself: rounds of (protocol, scenario, server), servers interleaved within a round.

Every server of a protocol is started at the start of a round and stopped at its end, so each
round also measures a fresh process; within the round each scenario runs on every server before
the next scenario starts, in an order rotated per round, so slow drift on the machine (thermal,
noisy neighbours) spreads over all servers instead of landing on one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import certs, datafiles, h2load, procs, rawref
from bench.options import Options
from bench.sampler import Sampler
from bench.scenarios import MBPS, Scenario
from bench.servers import H1, TLS, Context, Server

REPO = Path(__file__).resolve().parents[1]
MAX_STALLS = 2


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Instance:
    server: Server
    proto: str
    port: int
    started: procs.Started
    caps: set[str]

    @property
    def base_url(self) -> str:
        scheme = "https" if self.proto == TLS else "http"
        return f"{scheme}://127.0.0.1:{self.port}"


@dataclass
class Pending:
    server: Server
    proto: str
    port: int
    started: procs.Started
    timeout: float


@dataclass
class Record:
    """Everything known about one run (or one skipped run) of one scenario on one server."""

    round: int
    proto: str
    scenario: str
    server: str
    status: str  # "ok", "failed" or "skipped"
    reason: str = ""
    value: float | None = None
    metric: str = ""
    mb_per_s: float | None = None
    req_per_s: float | None = None
    cpu_s: float | None = None
    peak_rss_mib: float | None = None
    client_cpu_s: float | None = None
    wall_s: float | None = None
    n: int | None = None
    command: list[str] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    h2load: dict[str, Any] = field(default_factory=dict)
    # What the server wrote to its logs during a failed run: often the reason.
    server_log: str = ""


@dataclass
class Outcome:
    records: list[Record] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    raw: list[dict[str, Any]] = field(default_factory=list)
    servers: dict[str, dict[str, Any]] = field(default_factory=dict)
    started_at: float = 0.0
    seconds: float = 0.0
    # 1-minute load average before and after: other work on the machine skews every figure.
    load_before: float = 0.0
    load_after: float = 0.0


class Runner:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.files = datafiles.QUICK_FILES if opts.quick else datafiles.FULL_FILES
        self.out = Outcome(started_at=time.time())
        self.deadline = time.monotonic() + opts.budget
        self.tmp = Path(tempfile.mkdtemp(prefix="h2stream-bench-"))
        self.cert: Path | None = None
        self.key: Path | None = None
        # (proto, scenario, server) that timed out once: later rounds skip them to stay bounded.
        self.timed_out: set[tuple[str, str, str]] = set()
        # Stalled runs per (proto, server): a server that stalls twice is likely wedged on that
        # protocol, and each further try would cost the full stall time.
        self.stalls: dict[tuple[str, str], int] = {}

    # -- setup -------------------------------------------------------------------------------

    def _prepare(self) -> list[Server]:
        made = datafiles.ensure(self.opts.data, self.files)
        if made:
            say(f"made test files in {self.opts.data}: {', '.join(made)}")
        datafiles.warm(self.opts.data, self.files)
        if TLS in self.opts.protos:
            pair = certs.self_signed(self.tmp)
            if isinstance(pair, str):
                self.out.notes.append(f"TLS scenarios skipped: {pair}")
                self.opts = _without_tls(self.opts)
            else:
                self.cert, self.key = pair
        usable = []
        for server in self.opts.servers:
            why = server.unavailable()
            info: dict[str, Any] = {"software": server.software, "notes": list(server.notes)}
            if why:
                info["skipped"] = why
                self.out.notes.append(f"{server.name} skipped: {why}")
                say(f"skip {server.name}: {why}")
            else:
                info["version"] = server.version()
                usable.append(server)
            self.out.servers[server.name] = info
        return usable

    # -- servers -----------------------------------------------------------------------------

    def _launch(self, server: Server, proto: str, workdir: Path) -> Pending:
        ctx = Context(self.opts.data.resolve(), workdir, REPO, self.cert, self.key)
        port = procs.free_port()
        launch = server.launch(ctx, proto, port)
        started = procs.start(
            launch.argv,
            env=launch.env,
            cwd=launch.cwd or workdir,
            log_path=workdir / "log",
            cpus=self.opts.server_cpus,
        )
        self.out.servers[server.name].setdefault("commands", {})[proto] = launch.argv
        return Pending(server, proto, port, started, launch.start_timeout)

    def _await(self, p: Pending) -> Instance | str:
        try:
            procs.wait_accepting(p.started, p.port, p.timeout)
        except procs.StartError as exc:
            procs.stop(p.started)
            return f"failed to start: {exc}"
        inst = Instance(p.server, p.proto, p.port, p.started, set())
        # Where it may run, as the kernel has it (--pin's evidence).
        with contextlib.suppress(OSError):
            affinity = sorted(os.sched_getaffinity(p.started.pid))
            self.out.servers[p.server.name].setdefault("cpus", {})[p.proto] = affinity
        inst.caps = p.server.capabilities(inst.base_url)
        code = p.started.proc.poll()
        if code is not None:  # what answered was not this server (another took its port)
            return f"failed to start: exited with {code}: {procs.log_tail(p.started.log_path)}"
        needed = p.server.required()
        if needed and needed not in inst.caps:
            procs.stop(p.started)
            return f"lacks {needed!r} (its probe endpoint did not answer 200)"
        return inst

    def _start_all(self, servers: list[Server], proto: str, round_no: int) -> list[Instance]:
        """Launch every server at once (their start-ups overlap), then wait for each."""
        pending: list[Pending] = []
        running: list[Instance] = []
        try:
            for server in servers:
                workdir = self.tmp / f"r{round_no}-{proto}-{server.name}"
                workdir.mkdir()
                pending.append(self._launch(server, proto, workdir))
            self._await_all(pending, running, round_no)
        except BaseException:
            # Interrupted mid-start: stop what was launched before passing the exception on.
            procs.stop_all([p.started for p in pending])
            raise
        return running

    def _await_all(self, pending: list[Pending], running: list[Instance], round_no: int) -> None:
        for p in pending:
            proto = p.proto
            got = self._await(p)
            if isinstance(got, str) and got.startswith("failed to start"):
                # Once more alone: the probed port may have been taken before the server bound it.
                retry = self._launch(p.server, proto, p.started.log_path.parent)
                try:
                    got = self._await(retry)
                except BaseException:
                    procs.stop(retry.started)
                    raise
            if isinstance(got, str):
                note = f"{p.server.name} ({proto}): {got}"
                say("  " + note)
                self.out.notes.append(note)
                for sc in self.opts.scenarios:
                    if not sc.applies(proto):
                        continue
                    load = sc.load(self.opts.quick, p.server.slow, proto)
                    if p.server.path_for(sc, load, set()) is not None:
                        self._skip(round_no, proto, sc, p.server, got)
            else:
                running.append(got)

    # -- measuring ---------------------------------------------------------------------------

    def _skip(self, round_no: int, proto: str, sc: Scenario, server: Server, why: str) -> None:
        self.out.records.append(
            Record(round_no, proto, sc.name, server.name, "skipped", why, metric=sc.metric)
        )

    def _measure(self, inst: Instance, sc: Scenario, round_no: int) -> Record | None:
        server, proto = inst.server, inst.proto
        if not sc.applies(proto):
            return None
        load = sc.load(self.opts.quick, server.slow, proto)
        path = server.path_for(sc, load, inst.caps)
        if path is None:
            return None  # not applicable: no cell in the table, nothing to report
        rec = Record(round_no, proto, sc.name, server.name, "skipped", metric=sc.metric, n=load.n)
        key = (proto, sc.name, server.name)
        left = self.deadline - time.monotonic()
        if key in self.timed_out:
            rec.reason = "timed out or stalled in an earlier round"
            return rec
        if self.stalls.get((proto, server.name), 0) >= MAX_STALLS:
            rec.reason = f"stalled in {MAX_STALLS} scenarios already on {proto}"
            return rec
        if left < 5:
            rec.reason = "run budget (--budget) used up"
            return rec
        if inst.started.proc.poll() is not None:
            rec.reason = f"server exited ({inst.started.proc.returncode})"
            return rec
        body = self.files.get(load.file) if sc.needs is None else None
        logs = _log_sizes(inst.started.log_path.parent)
        with Sampler(inst.started.pid) as sampler:
            run = h2load.run(
                inst.base_url + path,
                load,
                timeout=min(self.opts.run_timeout, left),
                stall=self.opts.stall,
                body_size=body,
                headers=sc.headers,
                h1=proto == H1,
                cpus=self.opts.client_cpus,
            )
        usage = sampler.usage()
        p = run.parsed
        rec.command, rec.wall_s, rec.client_cpu_s = run.argv, run.wall_s, run.client_cpu_s
        rec.cpu_s, rec.peak_rss_mib, rec.usage = usage.cpu_s, usage.peak_rss_mib, asdict(usage)
        rec.mb_per_s, rec.req_per_s = p.get("mb_per_s"), p.get("req_per_s")
        rec.h2load = {**p, "output_tail": run.output_tail}
        if run.ok:
            rec.status = "ok"
            rec.value = rec.mb_per_s if sc.metric == MBPS else rec.req_per_s
        else:
            rec.status, rec.reason = "failed", "; ".join(run.problems)
            rec.server_log = _log_growth(inst.started.log_path.parent, logs)
            if any(x.startswith(("h2load timed out", "stalled")) for x in run.problems):
                self.timed_out.add(key)
                pair = (proto, server.name)
                self.stalls[pair] = self.stalls.get(pair, 0) + 1
        return rec

    def _round(self, servers: list[Server], proto: str, round_no: int) -> None:
        # Only the servers configured for this protocol (the HTTP/2-only peers sit out h1).
        servers = [s for s in servers if proto in s.protos]
        if not servers:
            return
        say(f"round {round_no}/{self.opts.rounds} {proto}: starting {len(servers)} server(s)")
        running = self._start_all(servers, proto, round_no)
        try:
            shift = (round_no - 1) % max(1, len(running))
            order = running[shift:] + running[:shift]
            for sc in self.opts.scenarios:
                for inst in order:
                    rec = self._measure(inst, sc, round_no)
                    if rec is None:
                        continue
                    self.out.records.append(rec)
                    say("  " + _line(rec))
        finally:
            procs.stop_all([inst.started for inst in running])

    # -- raw-socket references -----------------------------------------------------------------

    def _raw(self) -> None:
        name = max(self.files, key=lambda n: self.files[n])
        path, size = self.opts.data / name, self.files[name]
        started: dict[str, tuple[procs.Started, int]] = {}
        script = Path(rawref.__file__)
        try:
            for mode in rawref.MODES:
                port = procs.free_port()
                workdir = self.tmp / f"raw-{mode}"
                workdir.mkdir()
                argv = [sys.executable, str(script), mode, str(path), str(port)]
                st = procs.start(argv, env={}, cwd=workdir, log_path=workdir / "log")
                procs.wait_accepting(st, port, 10)
                started[mode] = (st, port)
            for round_no in range(1, self.opts.rounds + 1):
                for mode, (_, port) in started.items():
                    try:
                        mbps = rawref.measure(port, size, timeout=min(120, self.opts.run_timeout))
                        self.out.raw.append(
                            {"round": round_no, "mode": mode, "mb_per_s": mbps, "file": name}
                        )
                    except (OSError, TimeoutError) as exc:
                        self.out.raw.append(
                            {"round": round_no, "mode": mode, "error": str(exc), "file": name}
                        )
        except procs.StartError as exc:
            self.out.notes.append(f"raw-socket references skipped: {exc}")
        finally:
            procs.stop_all([st for st, _ in started.values()])

    # -- the whole run -------------------------------------------------------------------------

    def run(self) -> Outcome:
        t0 = time.monotonic()
        self.out.load_before = os.getloadavg()[0]
        try:
            servers = self._prepare()
            if self.opts.raw:
                say("raw-socket references ...")
                self._raw()
            for round_no in range(1, self.opts.rounds + 1):
                for proto in self.opts.protos:
                    self._round(servers, proto, round_no)
        except KeyboardInterrupt:
            # The rounds' finally blocks have stopped the servers; keep what was measured.
            self.out.notes.append("interrupted: partial results")
            say("interrupted: writing partial results")
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.out.seconds = time.monotonic() - t0
            self.out.load_after = os.getloadavg()[0]
        return self.out


def _log_sizes(workdir: Path) -> dict[Path, int]:
    return {p: p.stat().st_size for p in workdir.iterdir() if p.name == "log" or p.suffix == ".log"}


def _log_growth(workdir: Path, before: dict[Path, int], limit: int = 1500) -> str:
    parts = []
    for path, size in _log_sizes(workdir).items():
        start = before.get(path, 0)
        if size > start:
            with path.open("rb") as f:
                f.seek(max(start, size - limit))
                text = f.read().decode("utf-8", "replace").strip()
            parts.append(f"[{path.name}] {text}")
    return "\n".join(parts)


def _line(rec: Record) -> str:
    head = f"{rec.scenario:<9} {rec.server:<20}"
    if rec.status != "ok":
        return f"{head} {rec.status.upper()}: {rec.reason}"
    return (
        f"{head} {rec.value:>12,.1f} {rec.metric:<6} cpu {rec.cpu_s:6.2f}s "
        f"rss {rec.peak_rss_mib:6.1f} MiB  ({rec.wall_s:.1f}s)"
    )


def _without_tls(opts: Options) -> Options:
    return replace(opts, protos=[p for p in opts.protos if p != TLS])
