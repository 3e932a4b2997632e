"""Per-request CPU cost of the HTTP/1.1 path, without sockets: ``python -m bench.micro_http1``.

Drives an :class:`~h2stream.http1.connection.Http1Connection` with the bytes h2load ``--h1``
sends (one GET per read, as ``-m 1`` does, or ``--pipeline N`` requests per read) and answers
them with the handler a worker serves (the directory, small-file cache on, the ``/_h2stream/``
endpoints in front); the sink joins and discards what a transport would be handed. Reports CPU
microseconds per request (process time: other load on the machine matters less), and with
``--profile`` the top functions. The socket's own cost (one recv, one send per read) is not in
it: ``bench/`` runs under h2load measure that.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time

from bench.micro_session import count_read
from h2stream.config import Config
from h2stream.core.framing import SinkBase
from h2stream.handlers.build import build_handler
from h2stream.http1.connection import Http1Connection

REQUEST = b"GET /%s HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nuser-agent: h2load nghttp2/1.52.0\r\n\r\n"


class DiscardingSink(SinkBase):
    """An Http1Sink that joins each flush's bytes, as the transport sink does, and drops them."""

    writable = True
    use_sendfile = False

    def __init__(self) -> None:
        self.bytes = 0
        self._parts: list[bytes | bytearray | memoryview] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._parts.append(data)

    def write_raw(self, data: bytes) -> None:
        self._parts.append(data)

    def start_body(self, chunked: bool) -> None:
        pass

    def send_file_frames(
        self, stream_id: int, fd: int, offset: int, count: int, max_frame: int
    ) -> tuple[int, bool]:
        raise AssertionError("use_sendfile is off")

    def flush(self) -> None:
        parts, self._parts = self._parts, []
        if parts:
            self.bytes += len(b"".join(parts))


def run(requests: int, pipeline: int, size: int, profile: bool) -> float:
    with tempfile.TemporaryDirectory() as root:
        with open(os.path.join(root, "f.bin"), "wb") as f:
            f.write(os.urandom(size))
        config = Config(root=root, max_requests_per_connection=0)
        handler = build_handler(config, None, serve_root=True)
        sink = DiscardingSink()
        conn = Http1Connection(config, sink, handler, lambda: None, lambda: None, lambda _: None)
        data = REQUEST % b"f.bin" * pipeline
        reads = requests // pipeline
        for _ in range(200):  # warm the caches (path, small file, date)
            conn.receive(data)
            sink.flush()
        profiler = cProfile.Profile() if profile else None
        start = time.process_time()
        if profiler is not None:
            profiler.enable()
        for _ in range(reads):
            count_read()
            conn.receive(data)
            sink.flush()
        if profiler is not None:
            profiler.disable()
        used = time.process_time() - start
        assert not conn.closed, "the connection closed: a request was refused"
        if profiler is not None:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return used / (reads * pipeline) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--pipeline", type=int, default=1, help="requests per read")
    parser.add_argument("--size", type=int, default=1024, help="file size in bytes")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.profile:
        run(args.requests // 4, args.pipeline, args.size, True)
        return
    costs = sorted(run(args.requests, args.pipeline, args.size, False) for _ in range(args.rounds))
    print(
        f"HTTP/1.1 GET of {args.size} B, {args.pipeline} per read: "
        f"median {costs[len(costs) // 2]:.2f} us/request (min {costs[0]:.2f}, max {costs[-1]:.2f})"
    )


if __name__ == "__main__":
    main()
