"""Per-request CPU cost of the ASGI handler on the protocol core: ``python -m bench.micro_asgi``.

The same shape as :mod:`bench.micro_session` (a real h2 client's request batches fed to a
:class:`~h2stream.core.session.Session`, a sink that discards frames), answered by the ASGI
handler running bench/asgi_app.py's memory mode, on uvloop, with the loop turns a connection
would take. Reports CPU microseconds per request (process time: other load on the machine
matters less than for h2load's req/s), and with ``--profile`` the top functions.
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import pstats
import tempfile
import time
from collections.abc import Callable
from typing import Any

import uvloop

from bench.micro_session import DiscardingSink, batch_arguments, client_batches
from h2stream.config import Config
from h2stream.core.exchange import Exchange
from h2stream.core.session import Session
from h2stream.handlers.asgi import AsgiHandler

Scope = dict[str, Any]
Message = dict[str, Any]


def memory_app(body: bytes) -> Callable[..., Any]:
    """bench/asgi_app.py's memory mode for one path (the harness runs that very file)."""
    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"content-length", b"%d" % len(body)),
    ]

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


class NativeAnswer:
    """The floor: the same response straight from the exchange, no ASGI (``--native``)."""

    tasks: frozenset[Any] = frozenset()

    def __init__(self, body: bytes) -> None:
        self._body = body

    def __call__(self, exchange: Exchange) -> None:
        exchange.respond_bytes(200, self._body, b"application/octet-stream")


async def _run(
    preface: bytes,
    batches: list[bytes],
    per_batch: int,
    size: int,
    native: bool,
    profiler: cProfile.Profile | None,
) -> float:
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory() as root:
        config = Config(root=root, max_concurrent_streams=per_batch, lifespan="off")
        body = os.urandom(size)
        handler: Any = AsgiHandler(memory_app(body), config) if not native else NativeAnswer(body)
        sink = DiscardingSink()
        pump_due = False

        def pump() -> None:
            nonlocal pump_due
            pump_due = False
            session.pump()

        def wake() -> None:
            # As the protocol's schedule_pump: one scheduler turn per loop iteration at most.
            nonlocal pump_due
            if not pump_due:
                pump_due = True
                loop.call_soon(pump)

        session = Session(config, sink, handler, on_close=lambda: None, wake=wake)
        session.start()
        session.receive(preface)
        start = time.process_time()
        if profiler:
            profiler.enable()
        for batch in batches:
            session.receive(batch)
            # The turns a connection gets before its next read: app tasks, then the pump.
            while handler.tasks or pump_due:
                await asyncio.sleep(0)
        if profiler:
            profiler.disable()
        elapsed = time.process_time() - start
        if session.streams:
            raise RuntimeError(f"{len(session.streams)} streams left unanswered")
        return elapsed / (len(batches) * per_batch) * 1e6


def run(
    requests: int, per_batch: int, size: int, native: bool, profile: bool, rounds: int = 1
) -> list[float]:
    """``rounds`` fresh sessions fed the same request bytes (made once: the h2 client that
    encodes them costs more than the server, and would blur an instruction count)."""
    preface, batches = client_batches("/f.bin", requests // per_batch, per_batch)
    profiler = cProfile.Profile() if profile else None
    results = [
        uvloop.run(_run(preface, batches, per_batch, size, native, profiler)) for _ in range(rounds)
    ]
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    return results


def main() -> None:
    parser = batch_arguments(__doc__)
    parser.add_argument("--native", action="store_true", help="answer without ASGI (the floor)")
    args = parser.parse_args()
    if args.profile:
        run(args.requests, args.per_batch, args.size, args.native, True)
        return
    results = sorted(run(args.requests, args.per_batch, args.size, args.native, False, args.rounds))
    kind = "native" if args.native else "asgi"
    print(
        f"{kind}: {results[len(results) // 2]:.1f} us CPU per request "
        f"(median of {args.rounds}; min {results[0]:.1f}, max {results[-1]:.1f}), "
        f"{args.size}-byte body from memory, {args.per_batch} requests per read"
    )


if __name__ == "__main__":
    main()
