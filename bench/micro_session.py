"""Per-request CPU cost of the protocol core, without sockets: ``python -m bench.micro_session``.

Drives a :class:`~h2stream.core.session.Session` with batches of GET requests produced by a
real h2 client connection and answers them with the handler a worker serves (small files from
memory, revalidated once per read, and each batch is one read; ``--uncached``: the directory
opening the file per request, the measure before 2026-12-07); the sink discards frames (but
reads file payloads, as the copy path would). Reports CPU microseconds per request (process
time, so other load on the machine matters less), and with ``--profile`` the top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time

import h2.config
import h2.connection

from h2stream.config import Config
from h2stream.core.framing import SinkBase
from h2stream.core.session import Session
from h2stream.handlers.build import build_handler
from h2stream.handlers.static import StaticFiles

try:
    from h2stream.core.reads import READS
except ImportError:  # an older checkout's package (bench.instructions --against) counts none
    READS = None


def count_read() -> None:
    """One read from the network, as the protocol counts it before handing bytes over."""
    if READS is not None:
        READS.value += 1


class DiscardingSink(SinkBase):
    """Counts what would be written; the copy path still reads the file (SinkBase)."""

    writable = True
    use_sendfile = False

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.bytes += len(data)


def client_batches(path: str, batches: int, per_batch: int) -> tuple[bytes, list[bytes]]:
    config = h2.config.H2Configuration(client_side=True, header_encoding=None)
    client = h2.connection.H2Connection(config=config)
    client.initiate_connection()
    client.increment_flow_control_window(1 << 30)
    preface = client.data_to_send()
    out = []
    for _ in range(batches):
        for _ in range(per_batch):
            stream_id = client.get_next_available_stream_id()
            client.send_headers(
                stream_id,
                [
                    (b":method", b"GET"),
                    (b":scheme", b"http"),
                    (b":authority", b"127.0.0.1:8080"),
                    (b":path", path.encode()),
                    (b"user-agent", b"h2load nghttp2/1.52.0"),
                ],
                end_stream=True,
            )
            # The client never hears back: left open, its streams would make h2 walk all of
            # them on every send_headers (a quadratic set-up of minutes). The bytes are the same.
            del client.streams[stream_id]
        out.append(client.data_to_send())
    return preface, out


def run(
    batches: tuple[bytes, list[bytes]],
    per_batch: int,
    size: int,
    profile: bool,
    uncached: bool = False,
) -> float:
    """One fresh session fed ``batches`` (made once by :func:`client_batches`: the h2 client
    that encodes them costs more than the server, and would blur an instruction count)."""
    preface, reads = batches
    with tempfile.TemporaryDirectory() as root:
        with open(os.path.join(root, "f.bin"), "wb") as f:
            f.write(os.urandom(size))
        config = Config(root=root, max_concurrent_streams=per_batch)
        sink = DiscardingSink()
        # The handler a worker serves (small files from memory, revalidated by an lstat
        # per read; the /_h2stream/ endpoints in front), or the directory opening every file.
        handler = StaticFiles(root) if uncached else build_handler(config, None, serve_root=True)
        session = Session(config, sink, handler, on_close=lambda: None)
        session.start()
        session.receive(preface)
        profiler = cProfile.Profile() if profile else None
        start = time.process_time()
        if profiler:
            profiler.enable()
        for batch in reads:
            count_read()
            session.receive(batch)
        if profiler:
            profiler.disable()
        elapsed = time.process_time() - start
        if profiler:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return elapsed / (len(reads) * per_batch) * 1e6


def batch_arguments(description: str | None) -> argparse.ArgumentParser:
    """The options every micro benchmark driving a session with request batches takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--per-batch", type=int, default=100)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    return parser


def main() -> None:
    parser = batch_arguments(__doc__)
    parser.add_argument(
        "--uncached",
        action="store_true",
        help="open, stat, read and close the file per request (no small-file cache)",
    )
    args = parser.parse_args()
    batches = client_batches("/f.bin", args.requests // args.per_batch, args.per_batch)
    if args.profile:
        run(batches, args.per_batch, args.size, True, args.uncached)
        return
    results = sorted(
        run(batches, args.per_batch, args.size, False, args.uncached) for _ in range(args.rounds)
    )
    how = "opened per request" if args.uncached else "as a worker serves it"
    print(
        f"session: {results[len(results) // 2]:.1f} us CPU per request "
        f"(median of {args.rounds}; min {results[0]:.1f}, max {results[-1]:.1f}), "
        f"{args.size}-byte file {how}, {args.per_batch} requests per read"
    )


if __name__ == "__main__":
    main()
