"""One worker process under the supervisor: ``python -m h2stream.runtime.worker`` (internal).

The supervisor (supervisor.py) starts a fresh interpreter per worker, so a reload re-imports
the code, and hands it:

- the listening sockets (inherited fds, bound with SO_REUSEPORT by the supervisor),
- a status pipe: the worker writes ``ready`` once it accepts, so a reload knows when the old
  workers may stop,
- a lifeline pipe: the supervisor holds its write end; end-of-file means the supervisor died,
  and the worker drains and exits rather than serve unsupervised,
- the resolved Config as JSON (the supervisor read the file and environment and validated them).

SIGTERM drains (GOAWAY, in-flight streams finish, deadline) and exits 0. SIGINT and SIGHUP are
ignored: a terminal sends them to the whole process group, and they are the supervisor's to
interpret (it forwards a stop as SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

from h2stream.config import Config, option_fields
from h2stream.handlers.build import build_handler
from h2stream.runtime import gcpolicy
from h2stream.runtime.context import WorkerContext
from h2stream.runtime.server import Server, StartupError, new_event_loop
from h2stream.runtime.tls import TLSError

log = logging.getLogger("h2stream.worker")

READY = b"ready\n"


def encode_config(config: Config) -> str:
    """The option values as JSON; :func:`decode_config` rebuilds the same Config."""
    values: dict[str, Any] = {}
    for f, spec in option_fields():
        value = getattr(config, f.name)
        if spec.repeat:
            value = [str(item) for item in value]
        elif value is not None and not isinstance(value, bool | int | float | str):
            value = {"text": str(value)}  # an option type JSON lacks: re-parsed from its text
        values[f.name] = value
    return json.dumps(values)


def decode_config(text: str) -> Config:
    specs = {f.name: spec for f, spec in option_fields()}
    values: dict[str, Any] = {}
    for name, value in json.loads(text).items():
        spec = specs[name]
        if spec.repeat:
            value = tuple(spec.parse(item) for item in value)
        elif isinstance(value, dict):
            value = spec.parse(value["text"])
        values[name] = value
    return Config(**values)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="h2stream.runtime.worker", description=__doc__)
    parser.add_argument("--listen-fds", required=True, help="comma-separated listening fds")
    parser.add_argument("--status-fd", type=int, required=True)
    parser.add_argument("--lifeline-fd", type=int, required=True)
    parser.add_argument("--serve-root", action="store_true", help="serve ROOT behind --app")
    parser.add_argument("--snapshot-dir", help="publish metrics snapshots here (--metrics-bind)")
    parser.add_argument("config", help="the resolved Config as JSON")
    return parser.parse_args(argv)


def _inherited_sockets(fds: str) -> tuple[list[socket.socket], list[bool]]:
    """The sockets of ``--listen-fds`` (``5,6p``: ``p`` marks a PROXY-protocol listener)."""
    sockets, proxies = [], []
    for text in filter(None, fds.split(",")):
        sock = socket.socket(fileno=int(text.removesuffix("p")))
        sock.setblocking(False)
        sockets.append(sock)
        proxies.append(text.endswith("p"))
    return sockets, proxies


def serve_worker(
    config: Config,
    serve_root: bool,
    sockets: list[socket.socket],
    status_fd: int,
    lifeline_fd: int,
    snapshot_dir: str | None = None,
    proxies: Sequence[bool] = (),
) -> int:
    # Signals the supervisor interprets: a stop arrives here as SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # The worker's pools and budgets: its compressed responses borrow the zstd contexts.
    context = WorkerContext(config)
    handler = build_handler(config, config.app, serve_root, context.zstd)
    loop = new_event_loop(config.loop)
    asyncio.set_event_loop(loop)
    server = Server(config, handler, context)
    if config.metrics_bind is not None or config.access_log is not None:
        from h2stream.observe.wiring import Observability

        # The supervisor serves --metrics-bind, summing the snapshots every worker publishes.
        snapshot = f"{snapshot_dir}/{os.getpid()}.json" if snapshot_dir else None
        server.observability = Observability(server, listen=False, snapshot_path=snapshot)

    def on_lifeline() -> None:
        # Only end-of-file ever arrives: the supervisor never writes.
        loop.remove_reader(lifeline_fd)
        log.warning("worker %d: the supervisor is gone; draining", os.getpid())
        server.request_stop()

    stop_early = False

    def on_sigterm() -> None:
        nonlocal stop_early
        stop_early = True  # before start(), request_stop() has nothing to stop yet
        server.request_stop()

    async def serve() -> None:
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        await server.start(announce=lambda line: None, sockets=sockets, proxies=proxies)
        if stop_early:
            server.request_stop()
        gcpolicy.tune(config.gc_threshold)
        loop.add_reader(lifeline_fd, on_lifeline)
        with contextlib.suppress(OSError):  # a supervisor already gone: the lifeline says so
            os.write(status_fd, READY)
        log.debug("worker %d accepting", os.getpid())
        await server.serve_until_stopped()

    try:
        loop.run_until_complete(serve())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    config = decode_config(args.config)
    logging.basicConfig(
        level=config.log_level.upper(),
        format=f"%(asctime)s %(levelname)s %(name)s[{os.getpid()}]: %(message)s",
    )
    try:
        sockets, proxies = _inherited_sockets(args.listen_fds)
        return serve_worker(
            config, args.serve_root, sockets, args.status_fd, args.lifeline_fd, args.snapshot_dir,
            proxies,
        )  # fmt: skip
    except (StartupError, TLSError, ValueError) as exc:
        print(f"h2stream: error: worker {os.getpid()}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
