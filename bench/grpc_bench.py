"""gRPC scenarios: h2stream (``--app examples/grpc_bench.py:app``) against grpcio's own
asyncio server (bench/grpc_ref.py), one process each, h2load as the client.

Each round runs every scenario on each server back to back, so a shared machine's noise hits
both alike; the report gives per-round ratios and their median, and each server's peak RSS.
A run counts only if h2load saw every request succeed.

python -m bench.grpc_bench [--rounds N] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import procs
from bench.h2load import binary, h2load_parse
from bench.sampler import Sampler

REPO = Path(__file__).resolve().parents[1]
PATH = "/h2stream.bench.Bench/"
H2LOAD_TIMEOUT = 300.0


@dataclass(frozen=True)
class GrpcScenario:
    name: str
    description: str
    method: str
    request: bytes
    n: int
    c: int
    m: int
    # Messages per request (server-streaming), for messages/s.
    per_request: int = 1
    # The figure it is judged by: "MB/s", "msg/s" or "calls/s".
    metric: str = "calls/s"
    target: float = 3.0


def _spec(count: int, size: int) -> bytes:
    return json.dumps({"count": count, "size": size}).encode()


def scenarios(quick: bool) -> list[GrpcScenario]:
    big = 1024 if quick else 16384  # 64 MiB quick, 1 GiB full
    small = 20_000 if quick else 200_000
    calls = 5_000 if quick else 50_000
    return [
        GrpcScenario(
            "G-stream-64k",
            f"server-streaming {big} x 64 KiB messages on one stream",
            "Stream",
            _spec(big, 65536),
            1,
            1,
            1,
            big,
            "MB/s",
            3.0,
        ),
        GrpcScenario(
            "G-stream-1k",
            f"server-streaming {small} x 1 KiB messages on one stream",
            "Stream",
            _spec(small, 1024),
            1,
            1,
            1,
            small,
            "msg/s",
            5.0,
        ),
        GrpcScenario(
            "G-unary-100",
            f"unary 100 B echo, {calls} calls, 10 connections x 10 streams",
            "Echo",
            b"x" * 100,
            calls,
            10,
            10,
            1,
            "calls/s",
            3.0,
        ),
    ]


@dataclass
class Target:
    name: str
    argv: list[str]


def targets(port_h2s: int, port_ref: int) -> list[Target]:
    python = sys.executable
    return [
        Target(
            "h2stream",
            [
                python,
                "-m",
                "h2stream",
                "serve",
                "--app",
                "examples.grpc_bench:app",
                "--bind",
                f"127.0.0.1:{port_h2s}",
                "--workers",
                "1",
            ],
        ),
        Target("grpcio", [python, "-m", "bench.grpc_ref", str(port_ref)]),
    ]


def run_once(exe: str, port: int, scenario: GrpcScenario, body: Path, pid: int) -> dict[str, Any]:
    argv = [
        exe,
        "-t",
        "1",
        "-n",
        str(scenario.n),
        "-c",
        str(scenario.c),
        "-m",
        str(scenario.m),
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "-d",
        str(body),
        f"http://127.0.0.1:{port}{PATH}{scenario.method}",
    ]
    with Sampler(pid) as sampler:
        t0 = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=H2LOAD_TIMEOUT)
        wall = time.monotonic() - t0
    usage = sampler.usage()
    parsed = h2load_parse.parse(done.stdout)
    succeeded = parsed.get("requests", {}).get("succeeded")
    seconds = parsed.get("seconds") or wall
    data_bytes = parsed.get("data_bytes") or 0
    if scenario.metric == "MB/s":
        figure = data_bytes / seconds / 1e6
    elif scenario.metric == "msg/s":
        figure = scenario.n * scenario.per_request / seconds
    else:
        figure = scenario.n / seconds
    ok = done.returncode == 0 and succeeded == scenario.n
    return {
        "figure": figure if ok else None,
        "seconds": seconds,
        "peak_rss_mib": usage.peak_rss_mib,
        "ok": ok,
        "tail": "" if ok else done.stdout[-800:] + done.stderr[-400:],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.grpc_bench", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small counts (seconds per run)")
    parser.add_argument("--only", help="comma-separated scenario names")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    exe = binary()
    if exe is None:
        print("h2load is not installed", file=sys.stderr)
        return 2
    chosen = scenarios(args.quick)
    if args.only:
        names = {n.strip() for n in args.only.split(",")}
        chosen = [s for s in chosen if s.name in names]
    workdir = Path(tempfile.mkdtemp(prefix="h2s-grpc-bench-"))
    bodies = {}
    for scenario in chosen:
        path = workdir / f"{scenario.name}.grpc"
        path.write_bytes(struct.pack(">BI", 0, len(scenario.request)) + scenario.request)
        bodies[scenario.name] = path
    ports = {"h2stream": procs.free_port(), "grpcio": procs.free_port()}
    started: dict[str, procs.Started] = {}
    results: dict[str, dict[str, list[dict[str, Any]]]] = {s.name: {} for s in chosen}
    try:
        for target in targets(ports["h2stream"], ports["grpcio"]):
            started[target.name] = procs.start(
                target.argv, env={}, cwd=REPO, log_path=workdir / f"{target.name}.log"
            )
            procs.wait_accepting(started[target.name], ports[target.name], 30)
        for round_index in range(args.rounds):
            for scenario in chosen:
                for name, server in started.items():
                    run = run_once(exe, ports[name], scenario, bodies[scenario.name], server.pid)
                    results[scenario.name].setdefault(name, []).append(run)
                    shown = "FAILED" if run["figure"] is None else f"{run['figure']:,.0f}"
                    print(
                        f"round {round_index + 1} {scenario.name:13} {name:8} "
                        f"{shown:>12} {scenario.metric:7} peak RSS {run['peak_rss_mib']:.1f} MiB",
                        flush=True,
                    )
                    if not run["ok"]:
                        print(run["tail"], flush=True)
    finally:
        procs.stop_all(list(started.values()))
    print()
    summary = report(chosen, results)
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "runs": results}, indent=1))
    return 0 if all(row["ok"] for row in summary) else 1


def report(
    chosen: list[GrpcScenario], results: dict[str, dict[str, list[dict[str, Any]]]]
) -> list[dict[str, Any]]:
    rows = []
    for scenario in chosen:
        ours = results[scenario.name].get("h2stream", [])
        theirs = results[scenario.name].get("grpcio", [])
        ratios = [
            a["figure"] / b["figure"]
            for a, b in zip(ours, theirs, strict=False)
            if a["figure"] and b["figure"]
        ]
        ok_runs = [r["figure"] for r in ours if r["figure"]]
        ref_runs = [r["figure"] for r in theirs if r["figure"]]
        row = {
            "scenario": scenario.name,
            "metric": scenario.metric,
            "h2stream_median": statistics.median(ok_runs) if ok_runs else None,
            "grpcio_median": statistics.median(ref_runs) if ref_runs else None,
            "ratio_median": statistics.median(ratios) if ratios else None,
            "target": scenario.target,
            "h2stream_peak_rss_mib": max((r["peak_rss_mib"] for r in ours), default=None),
            "grpcio_peak_rss_mib": max((r["peak_rss_mib"] for r in theirs), default=None),
            "ok": bool(ratios) and len(ratios) == len(ours),
        }
        rows.append(row)
        ratio = row["ratio_median"]
        print(
            f"{scenario.name:13} h2stream {row['h2stream_median'] or 0:>12,.0f} "
            f"grpcio {row['grpcio_median'] or 0:>12,.0f} {scenario.metric:7} "
            f"ratio {ratio or 0:.2f}x (target {scenario.target}x) "
            f"peak RSS {row['h2stream_peak_rss_mib'] or 0:.1f} / "
            f"{row['grpcio_peak_rss_mib'] or 0:.1f} MiB"
        )
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
