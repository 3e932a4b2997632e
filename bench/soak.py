"""Soak: mixed h2load traffic, periodic attacks and aborted downloads against one server.

Not part of the test run. ``python -m bench.soak --duration 600`` starts ``h2stream serve``
on a generated tree and, for the whole duration:

- runs h2load back to back (1 KiB, 64 KiB and 1 MiB files, 4 connections x 10 streams),
  counting every request that did not succeed;
- mounts one attack every few seconds, in turn: rapid reset (also from stream 1,000,001),
  resets the server is provoked into (window overflow, DATA after END_STREAM),
  PING/SETTINGS/PRIORITY/WINDOW_UPDATE/empty-frame floods, a CONTINUATION flood, an HPACK
  bomb, a slowloris round, a zero-window hold, a slow reader, and the floods of issue 19:
  600 valid GETs written at once, blocks of 1,500 tiny or 2,000 empty fields, 1-byte DATA
  frames, requests of 10,000 ranges, bodies that never come and h2c ``101`` left silent;
- aborts a download mid-body (FIN or RST) about once a second;
- takes a good client's 1 KiB GET on a connection of its own every 100 ms (its latency);
- samples the server's RSS, open fds, connections and limit events every second.

It passes when no good request failed, the good client's median latency stayed under 50 ms
in every 30 s window, RSS and fds end where they settled after the warm-up (the median of the
last 30 s against the median of the 30 s after warm-up, within 10 % + 16 MiB and 16 fds), and
when, all load stopped, the fds return to the idle count.
Samples go to ``--out`` as JSON lines; the summary is printed as a table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import hpack  # noqa: E402
from support import frames as f  # noqa: E402  (the attack tests' raw frame tools)
from support.clients import RawConnection, RawH2Client, fetch  # noqa: E402
from support.metrics import LimitEvents  # noqa: E402

MIB = 1 << 20
LISTEN = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")
H2LOAD_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)
FILES = {"1k.bin": 1024, "64k.bin": 64 * 1024, "1m.bin": MIB, "100m.bin": 100 * MIB}
# The good client's requirement: its median latency in any 30 s window.
GOOD_MEDIAN_LIMIT = 0.050


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def block(fields: list[tuple[bytes, bytes]], path: bytes = b"/1k.bin") -> bytes:
    """A request header block, never indexed, with ``fields`` after the pseudo-headers."""
    base = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"localhost")]
    every = [*base, (b":path", path), *fields]
    return hpack.Encoder().encode([hpack.NeverIndexedHeaderTuple(k, v) for k, v in every])


def header_frames(stream_id: int, payload: bytes, end_stream: bool = True) -> bytes:
    """HEADERS (+ CONTINUATION) carrying ``payload`` in 16 KiB frames."""
    pieces = [payload[i : i + 16384] for i in range(0, len(payload), 16384)] or [b""]
    out = [f.headers(stream_id, pieces[0], end_stream=end_stream, end_headers=len(pieces) == 1)]
    for index, piece in enumerate(pieces[1:], start=2):
        out.append(f.continuation(stream_id, piece, end_headers=index == len(pieces)))
    return b"".join(out)


class Soak:
    def __init__(self, duration: float, warmup: float, server_args: list[str]) -> None:
        self.duration = duration
        self.warmup = warmup
        self.server_args = server_args
        self.stop = threading.Event()
        self.good = {"runs": 0, "succeeded": 0, "failed": 0}
        self.attacks: dict[str, int] = {}
        self.attack_errors: list[str] = []
        self.aborted = 0
        self.samples: list[dict[str, Any]] = []
        # The good client's GETs: (seconds since the start, latency in seconds or None).
        self.latencies: list[tuple[float, float | None]] = []
        self.lock = threading.Lock()

    # -- setup ---------------------------------------------------------------------------

    def start_server(self, root: Path) -> None:
        self.metrics_port = free_port()
        command = [
            sys.executable, "-m", "h2stream", "serve", str(root), "--bind", "127.0.0.1:0",
            "--metrics-bind", f"127.0.0.1:{self.metrics_port}", "--log-level", "warning",
            *self.server_args,
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = LISTEN.search(line)
        if not match:
            raise SystemExit(f"server did not start: {line}{self.proc.stderr.read()}")  # type: ignore[union-attr]
        self.port = int(match.group(1))
        self.ps = psutil.Process(self.proc.pid)
        self.stderr: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        self.metrics = LimitEvents(f"http://127.0.0.1:{self.metrics_port}")
        deadline = time.monotonic() + 10
        while True:
            try:
                self.metrics.limit_events()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    # -- the three kinds of load -----------------------------------------------------------

    def traffic(self) -> None:
        urls = [f"http://127.0.0.1:{self.port}/{name}" for name in ("1k.bin", "64k.bin", "1m.bin")]
        while not self.stop.is_set():
            result = subprocess.run(
                ["h2load", "-n", "3000", "-c", "4", "-m", "10", "-t", "1", *urls],
                capture_output=True,
                text=True,
                timeout=300,
            )
            match = H2LOAD_REQUESTS.search(result.stdout)
            with self.lock:
                self.good["runs"] += 1
                if match is None:
                    self.good["failed"] += 3000
                    continue
                total, _, _, succeeded, _, _, _ = map(int, match.groups())
                self.good["succeeded"] += succeeded
                self.good["failed"] += total - succeeded

    def attack_loop(self) -> None:
        mounts = self._attacks()
        names = list(mounts)
        i = 0
        while not self.stop.wait(3.0):
            name = names[i % len(names)]
            i += 1
            try:
                mounts[name]()
                with self.lock:
                    self.attacks[name] = self.attacks.get(name, 0) + 1
            except Exception as exc:  # an attack that did not go as expected is a finding
                self.attack_errors.append(f"{name}: {exc!r}")

    def _attacks(self) -> dict[str, Callable[[], None]]:
        port = self.port
        flood = f.headers(1, f.request_block("/1k.bin"), end_stream=False)

        def expect_calm(conn: RawConnection) -> None:
            try:
                assert conn.until(lambda: conn.goaway is not None, 10), "no GOAWAY"
                assert conn.goaway is not None
                assert conn.goaway.error_code == f.ENHANCE_YOUR_CALM, conn.goaway.error_code
            finally:
                conn.close()

        def frames_flood(make: Callable[[int], bytes]) -> Callable[[], None]:
            def mount() -> None:
                conn = RawConnection(port, initial=flood)
                conn.send(b"".join(make(i) for i in range(5000)))
                expect_calm(conn)

            return mount

        def rapid_reset() -> None:
            conn = RawConnection(port)
            pairs = (
                f.headers(2 * i + 1, f.request_block("/1m.bin")) + f.rst_stream(2 * i + 1)
                for i in range(2000)
            )
            conn.send(b"".join(pairs))
            expect_calm(conn)

        def continuation_flood() -> None:
            conn = RawConnection(port, initial=f.headers(1, f.request_block(), end_headers=False))
            for _ in range(64):
                if not conn.send(f.continuation(1, b"a" * 16384), timeout=2):
                    break
            expect_calm(conn)

        def hpack_bomb() -> None:
            import hpack

            block = f.request_block() + hpack.Encoder().encode([(b"x-bomb", b"a" * 4000)])
            conn = RawConnection(port, initial=f.headers(1, block + b"\xbe" * 10_000))
            expect_calm(conn)

        def slowloris() -> None:
            socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
            for sock in socks:
                sock.sendall(f.PREFACE[:10])
            time.sleep(1.0)
            for sock in socks:
                sock.close()

        def zero_window_hold() -> None:
            conn = RawConnection(port, connection_window=1 << 30)
            conn.send(f.headers(1, f.request_block("/100m.bin")))
            conn.until(lambda: len(conn.body(1)) >= 65535, 10)
            time.sleep(1.0)
            conn.close()

        def slow_reader() -> None:
            big = f.settings({0x4: (1 << 31) - 1})
            conn = RawConnection(port, initial=big, connection_window=(1 << 31) - 1, rcvbuf=4096)
            conn.send(f.headers(1, f.request_block("/100m.bin")))
            time.sleep(1.0)
            conn.close()

        def send_and_drop(payload: bytes, linger: float = 1.0) -> None:
            """Write ``payload`` at once on a fresh connection, read for a while, close."""
            conn = RawConnection(port, connection_window=1 << 30)
            try:
                conn.send(payload, timeout=10)
                conn.read_for(linger)
            finally:
                conn.close()

        def valid_gets() -> None:
            gets = block([(b"x-pad-%d" % i, b"v" * 100) for i in range(52)])
            send_and_drop(b"".join(header_frames(1 + 2 * n, gets) for n in range(600)))

        def many_fields() -> None:
            fields = block([]) + bytes([0x40, 1, ord("a"), 0]) * 1500
            conn = RawConnection(port)
            conn.send(b"".join(header_frames(1 + 2 * n, fields) for n in range(100)), timeout=10)
            expect_calm(conn)

        def empty_fields() -> None:
            fields = block([]) + b"\x00\x00\x00" * 2000
            conn = RawConnection(port)
            conn.send(b"".join(header_frames(1 + 2 * n, fields) for n in range(100)), timeout=10)
            expect_calm(conn)

        def tiny_data() -> None:
            conn = RawConnection(port)
            opening = header_frames(1, block([], b"/_h2stream/sink"), end_stream=False)
            conn.send(opening + f.data(1, b"x") * 100_000, timeout=10)
            expect_calm(conn)

        def many_ranges() -> None:
            ranges = b"bytes=" + b",".join(b"%d-%d" % (i, i) for i in range(10_000))
            request = block([(b"range", ranges)], b"/1m.bin")
            send_and_drop(b"".join(header_frames(1 + 2 * n, request) for n in range(20)))

        def high_id_rapid_reset() -> None:
            conn = RawConnection(port)
            first = 100_001  # under the default rotation (stream 199,999): ids say 50,000 requests
            pairs = (
                f.headers(first + 2 * i, f.request_block("/1m.bin")) + f.rst_stream(first + 2 * i)
                for i in range(2000)
            )
            conn.send(b"".join(pairs), timeout=10)
            expect_calm(conn)

        def provoked_resets() -> None:
            conn = RawConnection(port)
            provoking = (
                f.headers(2 * i + 1, f.request_block("/1m.bin"))
                + (f.window_update(2 * i + 1, 2**31 - 1) if i % 2 else f.data(2 * i + 1, b"x" * 16))
                for i in range(2000)
            )
            conn.send(b"".join(provoking), timeout=10)
            expect_calm(conn)

        def bodies_never_come() -> None:
            conns = []
            for _ in range(20):
                conn = RawConnection(port)
                conn.send(header_frames(1, block([], b"/_h2stream/sink"), end_stream=False))
                conns.append(conn)
            time.sleep(1.0)
            for conn in conns:
                conn.close()

        def upgrade_then_silence() -> None:
            socks = []
            for _ in range(20):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                sock.sendall(
                    b"GET /1k.bin HTTP/1.1\r\nHost: localhost\r\n"
                    b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                    b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
                )
                socks.append(sock)
            time.sleep(1.0)
            for sock in socks:
                sock.close()

        return {
            "valid_gets": valid_gets,
            "many_fields": many_fields,
            "empty_fields": empty_fields,
            "tiny_data": tiny_data,
            "many_ranges": many_ranges,
            "high_id_rapid_reset": high_id_rapid_reset,
            "provoked_resets": provoked_resets,
            "bodies_never_come": bodies_never_come,
            "upgrade_then_silence": upgrade_then_silence,
            "rapid_reset": rapid_reset,
            "ping_flood": frames_flood(lambda i: f.ping(i.to_bytes(8, "big"))),
            "settings_flood": frames_flood(lambda i: f.settings({0x3: 100})),
            "priority_flood": frames_flood(lambda i: f.priority(1 + 2 * (i % 100))),
            "window_update_flood": frames_flood(lambda i: f.window_update(0, 1)),
            "empty_frame_flood": frames_flood(lambda i: f.data(1)),
            "continuation_flood": continuation_flood,
            "hpack_bomb": hpack_bomb,
            "slowloris": slowloris,
            "zero_window_hold": zero_window_hold,
            "slow_reader": slow_reader,
        }

    def aborted_downloads(self) -> None:
        rng = random.Random(6)
        while not self.stop.wait(1.0):
            try:
                conn = RawConnection(self.port, connection_window=1 << 30)
                conn.send(f.headers(1, f.request_block("/100m.bin")))
                want = rng.randrange(1, 4 * MIB)
                conn.until(lambda c=conn, w=want: len(c.body(1)) >= min(w, 65535), 10)
                if rng.random() < 0.5:
                    with contextlib.suppress(OSError):
                        conn.sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0"
                        )
                conn.close()
                self.aborted += 1
            except Exception as exc:
                self.attack_errors.append(f"aborted_download: {exc!r}")

    def good_client(self) -> None:
        """A 1 KiB GET every 100 ms on a connection of its own (a new one if it ends)."""
        started = time.monotonic()
        client: RawH2Client | None = None
        while not self.stop.wait(0.1):
            at = time.monotonic() - started
            try:
                if client is None or client.closed or client.goaway is not None:
                    if client is not None:
                        client.close()
                    client = RawH2Client(self.port, auto_ack=True, connection_window=1 << 24)
                sent = time.monotonic()
                stream_id = client.request("/1k.bin")
                response = client.responses[stream_id]
                answered = client.until(lambda r=response: r.ended, 10)
                ok = answered and response.status == 200 and len(response.body) == 1024
                latency = time.monotonic() - sent if ok else None
            except OSError:
                latency = None
                client = None
            with self.lock:
                self.latencies.append((at, latency))
        if client is not None:
            client.close()

    def latency_windows(self) -> list[tuple[float, float, int]]:
        """(window start, median latency, failed GETs) per 30 s window of the good client."""
        windows = []
        for start in range(0, int(self.duration), 30):
            in_window = [lat for at, lat in self.latencies if start <= at < start + 30]
            answered = [lat for lat in in_window if lat is not None]
            if in_window:
                median = statistics.median(answered) if answered else float("inf")
                windows.append((float(start), median, len(in_window) - len(answered)))
        return windows

    # -- sampling ----------------------------------------------------------------------------

    def sample(self, started: float) -> dict[str, Any]:
        with self.lock:
            good = dict(self.good)
        try:
            events = self.metrics.limit_events()
        except OSError:
            events = {}
        return {
            "t": round(time.monotonic() - started, 1),
            "rss_mib": round(self.ps.memory_info().rss / MIB, 2),
            "fds": self.ps.num_fds(),
            "connections": len(self.ps.net_connections(kind="tcp")),
            "good_succeeded": good["succeeded"],
            "good_failed": good["failed"],
            "limit_events": sum(events.values()),
        }

    def run(self, out: Path) -> int:
        with tempfile.TemporaryDirectory(prefix="h2stream-soak-") as tmp:
            root = Path(tmp)
            for name, size in FILES.items():
                with open(root / name, "wb") as f:
                    block = os.urandom(MIB)
                    for offset in range(0, size, MIB):
                        f.write(block[: min(MIB, size - offset)])
            self.start_server(root)
            try:
                fetch(self.port, "/1k.bin")
                idle_fds = self.ps.num_fds()
                threads = [
                    threading.Thread(target=fn, daemon=True)
                    for fn in (
                        self.traffic,
                        self.attack_loop,
                        self.aborted_downloads,
                        self.good_client,
                    )
                ]
                for thread in threads:
                    thread.start()
                started = time.monotonic()
                with open(out, "w") as log:
                    while (elapsed := time.monotonic() - started) < self.duration:
                        sample = self.sample(started)
                        self.samples.append(sample)
                        log.write(json.dumps(sample) + "\n")
                        log.flush()
                        if int(elapsed) % 30 == 0:
                            print(json.dumps(sample), flush=True)
                        time.sleep(max(0.0, 1.0 - (time.monotonic() - started - elapsed)))
                self.stop.set()
                for thread in threads:
                    thread.join(330)
                # All load stopped: connections close (idle or lingering), fds come back.
                deadline = time.monotonic() + 30
                while self.ps.num_fds() > idle_fds + 2 and time.monotonic() < deadline:
                    time.sleep(0.5)
                quiet_fds = self.ps.num_fds()
                events = self.metrics.limit_events()
            finally:
                self.proc.terminate()
                try:
                    self.proc.wait(20)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
        return self.report(idle_fds, quiet_fds, events)

    def report(self, idle_fds: int, quiet_fds: int, events: dict[str, int]) -> int:
        after = [s for s in self.samples if self.warmup <= s["t"] < self.warmup + 30]
        last = [s for s in self.samples if s["t"] >= self.samples[-1]["t"] - 30]
        settled_rss = statistics.median(s["rss_mib"] for s in after)
        final_rss = statistics.median(s["rss_mib"] for s in last)
        settled_fds = statistics.median(s["fds"] for s in after)
        final_fds = statistics.median(s["fds"] for s in last)
        peak_rss = max(s["rss_mib"] for s in self.samples)
        peak_fds = max(s["fds"] for s in self.samples)
        windows = self.latency_windows()
        answered = [lat for _, lat in self.latencies if lat is not None]
        worst = max((median for _, median, _ in windows), default=float("inf"))
        good_failed = sum(failed for _, _, failed in windows)
        checks = {
            "no good request failed": self.good["failed"] == 0 and good_failed == 0,
            "good client's median under 50 ms in every 30 s window": worst < GOOD_MEDIAN_LIMIT,
            "RSS ended where it settled": final_rss <= settled_rss * 1.10 + 16,
            "fds ended where they settled": final_fds <= settled_fds + 16,
            "fds back to idle once quiet": quiet_fds <= idle_fds + 2,
            "every attack answered as expected": not self.attack_errors,
            "no server errors logged": not any("Traceback" in line for line in self.stderr),
        }
        rss = f"{settled_rss:.1f} / {final_rss:.1f} / {peak_rss:.1f}"
        fds = f"{idle_fds} / {settled_fds:.0f} / {final_fds:.0f} / {peak_fds} / {quiet_fds}"
        rows = [
            ("duration s", f"{self.samples[-1]['t']:.0f}"),
            ("good requests succeeded", f"{self.good['succeeded']:,}"),
            ("good requests failed", f"{self.good['failed']:,}"),
            ("h2load runs", str(self.good["runs"])),
            (
                "good client GETs / median / worst 30 s median / p99 ms",
                f"{len(self.latencies)} / {statistics.median(answered) * 1000:.1f} / "
                f"{worst * 1000:.1f} / {sorted(answered)[int(len(answered) * 0.99)] * 1000:.1f}"
                if answered
                else "none answered",
            ),
            ("attacks mounted", ", ".join(f"{k} {v}" for k, v in sorted(self.attacks.items()))),
            ("aborted downloads", str(self.aborted)),
            ("limit events", ", ".join(f"{k} {v}" for k, v in sorted(events.items()))),
            ("RSS MiB settled / final / peak", rss),
            ("fds idle / settled / final / peak / quiet", fds),
        ]
        width = max(len(k) for k, _ in rows)
        for key, value in rows:
            print(f"{key:<{width}}  {value}")
        for error in self.attack_errors[:10]:
            print("attack error:", error)
        for name, ok in checks.items():
            print(f"{'PASS' if ok else 'FAIL'}  {name}")
        return 0 if all(checks.values()) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before settling")
    parser.add_argument("--out", type=Path, default=Path("soak-samples.jsonl"))
    parser.add_argument("server_args", nargs="*", help="extra h2stream serve flags (after --)")
    args = parser.parse_args(argv)
    if args.duration < args.warmup + 60:
        parser.error("--duration must be at least --warmup + 60 s")
    return Soak(args.duration, args.warmup, args.server_args).run(args.out)


if __name__ == "__main__":
    sys.exit(main())
