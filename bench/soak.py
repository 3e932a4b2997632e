"""Soak: mixed h2load traffic, periodic attacks and aborted downloads against one server.

Not part of the test run. ``python -m bench.soak --duration 600`` starts ``h2stream serve``
on a generated tree and, for the whole duration:

- runs h2load back to back (1 KiB, 64 KiB and 1 MiB files, 4 connections x 10 streams),
  counting every request that did not succeed;
- mounts one attack every few seconds, in turn: rapid reset, PING/SETTINGS/PRIORITY/
  WINDOW_UPDATE/empty-frame floods, a CONTINUATION flood, an HPACK bomb, a slowloris
  round, a zero-window hold, a slow reader;
- aborts a download mid-body (FIN or RST) about once a second;
- samples the server's RSS, open fds, connections and limit events every second.

It passes when no good request failed and RSS and fds end where they settled after the
warm-up (the median of the last 30 s against the median of the 30 s after warm-up, within
10 % + 16 MiB and 16 fds), and when, all load stopped, the fds return to the idle count.
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

import attacks as a  # noqa: E402  (the attack tests' raw frame tools)

MIB = 1 << 20
LISTEN = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")
H2LOAD_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)
FILES = {"1k.bin": 1024, "64k.bin": 64 * 1024, "1m.bin": MIB, "100m.bin": 100 * MIB}


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
        self.lock = threading.Lock()

    # -- setup ---------------------------------------------------------------------------

    def start_server(self, root: Path) -> None:
        self.metrics_port = a.free_port()
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
        self.metrics = a.Metrics(self.metrics_port)
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
        flood = a.headers(1, a.request_block("/1k.bin"), end_stream=False)

        def expect_calm(conn: a.RawConnection) -> None:
            try:
                assert conn.until(lambda: conn.goaway is not None, 10), "no GOAWAY"
                assert conn.goaway is not None
                assert conn.goaway.error_code == a.ENHANCE_YOUR_CALM, conn.goaway.error_code
            finally:
                conn.close()

        def frames_flood(make: Callable[[int], bytes]) -> Callable[[], None]:
            def mount() -> None:
                conn = a.RawConnection(port, initial=flood)
                conn.send(b"".join(make(i) for i in range(5000)))
                expect_calm(conn)

            return mount

        def rapid_reset() -> None:
            conn = a.RawConnection(port)
            pairs = (
                a.headers(2 * i + 1, a.request_block("/1m.bin")) + a.rst_stream(2 * i + 1)
                for i in range(2000)
            )
            conn.send(b"".join(pairs))
            expect_calm(conn)

        def continuation_flood() -> None:
            conn = a.RawConnection(port, initial=a.headers(1, a.request_block(), end_headers=False))
            for _ in range(64):
                if not conn.send(a.continuation(1, b"a" * 16384), timeout=2):
                    break
            expect_calm(conn)

        def hpack_bomb() -> None:
            import hpack

            block = a.request_block() + hpack.Encoder().encode([(b"x-bomb", b"a" * 4000)])
            conn = a.RawConnection(port, initial=a.headers(1, block + b"\xbe" * 10_000))
            expect_calm(conn)

        def slowloris() -> None:
            socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
            for sock in socks:
                sock.sendall(a.PREFACE[:10])
            time.sleep(1.0)
            for sock in socks:
                sock.close()

        def zero_window_hold() -> None:
            conn = a.RawConnection(port, connection_window=1 << 30)
            conn.send(a.headers(1, a.request_block("/100m.bin")))
            conn.until(lambda: len(conn.body(1)) >= 65535, 10)
            time.sleep(1.0)
            conn.close()

        def slow_reader() -> None:
            big = a.settings({0x4: (1 << 31) - 1})
            conn = a.RawConnection(port, initial=big, connection_window=(1 << 31) - 1, rcvbuf=4096)
            conn.send(a.headers(1, a.request_block("/100m.bin")))
            time.sleep(1.0)
            conn.close()

        return {
            "rapid_reset": rapid_reset,
            "ping_flood": frames_flood(lambda i: a.ping(i.to_bytes(8, "big"))),
            "settings_flood": frames_flood(lambda i: a.settings({0x3: 100})),
            "priority_flood": frames_flood(lambda i: a.priority(1 + 2 * (i % 100))),
            "window_update_flood": frames_flood(lambda i: a.window_update(0, 1)),
            "empty_frame_flood": frames_flood(lambda i: a.data(1)),
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
                conn = a.RawConnection(self.port, connection_window=1 << 30)
                conn.send(a.headers(1, a.request_block("/100m.bin")))
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
                a.fetch(self.port, "/1k.bin")
                idle_fds = self.ps.num_fds()
                threads = [
                    threading.Thread(target=fn, daemon=True)
                    for fn in (self.traffic, self.attack_loop, self.aborted_downloads)
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
        checks = {
            "no good request failed": self.good["failed"] == 0,
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
