"""``python -m bench``: parse the options, run, write table, JSON and chart."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from bench import h2load, scenarios, servers
from bench.options import Options
from bench.output import write_all
from bench.runner import Runner

BENCH = Path(__file__).resolve().parent


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="h2load benchmark of h2stream against peer servers, all started here on "
        "127.0.0.1. Prints a Markdown table of medians; writes JSON and a PNG to --out.",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny files and request counts: checks the harness in seconds",
    )
    p.add_argument(
        "--scenarios",
        help="comma-separated, e.g. A-1g,B-1k (default: all: " + ",".join(scenarios.BY_NAME) + ")",
    )
    p.add_argument(
        "--servers",
        help="comma-separated (default: all installed: " + ",".join(servers.BY_NAME) + ")",
    )
    p.add_argument("--rounds", type=int, default=3, help="rounds per scenario (default 3)")
    p.add_argument("--reference", default="nginx", help="ratio column's server (default nginx)")
    p.add_argument(
        "--tls",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run every scenario over TLS (default on)",
    )
    p.add_argument(
        "--proto",
        help="comma-separated among h2c, tls and h1 (HTTP/1.1 cleartext, h2load --h1); "
        "overrides --tls/--no-tls",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=BENCH / "out",
        help="directory for JSON, Markdown and PNG (default bench/out/)",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=BENCH / "data",
        help="directory of the test files, made once (default bench/data/)",
    )
    p.add_argument(
        "--save-table",
        action="store_true",
        help="also copy the table to bench/results/YYYY-MM-DD-HOSTNAME.md",
    )
    p.add_argument(
        "--no-raw",
        dest="raw",
        action="store_false",
        help="skip the raw-socket reference measurements",
    )
    p.add_argument("--no-chart", dest="chart", action="store_false", help="skip the PNG")
    p.add_argument(
        "--run-timeout",
        type=float,
        help="seconds one h2load run may take (default 120, --quick 30)",
    )
    p.add_argument(
        "--stall",
        type=float,
        help="kill an h2load run that receives nothing for this many seconds "
        "(default 15, --quick 5)",
    )
    p.add_argument(
        "--budget",
        type=float,
        help="seconds the whole run may take; later runs are skipped (default 3600, --quick 120)",
    )
    p.add_argument(
        "--pin",
        action="store_true",
        help="run every server on CPU 0 and h2load on CPU 1 (taskset-style affinity): takes "
        "the scheduler's placement out of single-threaded servers' results (a server with "
        "more threads gets one CPU too)",
    )
    p.add_argument("--list", action="store_true", help="list scenarios and servers, then exit")
    return p


def _pinning(pin: bool) -> dict[str, frozenset[int]]:
    """The CPU sets of --pin: the first two CPUs this process may use."""
    if not pin:
        return {}
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        raise ValueError("--pin needs two CPUs (server and h2load on one of their own each)")
    return {"server_cpus": frozenset({usable[0]}), "client_cpus": frozenset({usable[1]})}


def _protos(args: argparse.Namespace) -> list[str]:
    if args.proto:
        chosen = [p.strip().lower() for p in args.proto.split(",") if p.strip()]
        bad = [p for p in chosen if p not in (servers.H2C, servers.TLS, servers.H1)]
        if bad:
            raise ValueError(f"unknown protocol(s) {bad}: use h2c, tls and/or h1")
        return chosen
    return [servers.H2C, servers.TLS] if args.tls else [servers.H2C]


def _list() -> int:
    print("Scenarios:")
    for sc in scenarios.SCENARIOS:
        print(f"  {sc.name:<9} {' '.join(sc.full.flags()):<32} {sc.description}")
        if sc.h1 is not None:
            print(f"  {'':<9} {' '.join(sc.h1[0].flags()):<32} h1: h2load --h1")
    print("Servers:")
    for s in servers.ALL:
        print(f"  {s.name:<20} {s.unavailable() or 'available'} ({', '.join(s.protos)})")
    return 0


def options(argv: list[str] | None = None) -> Options | int:
    args = _parser().parse_args(argv)
    if args.list:
        return _list()
    try:
        opts = Options(
            quick=args.quick,
            scenarios=scenarios.select(args.scenarios),
            servers=servers.select(args.servers),
            protos=_protos(args),
            rounds=max(1, args.rounds),
            reference=args.reference,
            out=args.out,
            data=args.data,
            save_table=args.save_table,
            raw=args.raw,
            run_timeout=args.run_timeout or (30.0 if args.quick else 120.0),
            stall=args.stall or (5.0 if args.quick else 15.0),
            budget=args.budget or (120.0 if args.quick else 3600.0),
            chart=args.chart,
            **_pinning(args.pin),
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return opts


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    opts = options(argv)
    if isinstance(opts, int):
        return opts
    if h2load.binary() is None:
        print(
            "error: h2load not found (apt-get install nghttp2-client, or run "
            "tools/install-peers.sh)",
            file=sys.stderr,
        )
        return 2
    # SIGTERM (a test runner's timeout, a CI cancel) unwinds like Ctrl-C, so the rounds'
    # finally blocks stop every server this run started.
    signal.signal(signal.SIGTERM, _interrupt)
    outcome = Runner(opts).run()
    failed = write_all(outcome, opts)
    return 1 if failed else 0
