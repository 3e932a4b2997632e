"""``h2stream top`` against a live server: it scrapes, computes rates and shows the figures.

Run as the real command: once with ``--iterations`` into a pipe (one block per refresh), once
in a pseudo-terminal (redraws in place).
"""

from __future__ import annotations

import os
import pty
import re
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from support.clients import RawH2Client
from support.commands import REPO, h2stream_command, run_h2stream
from support.metrics import metrics_url

from h2stream.observe.top import CLEAR


def test_top_shows_live_figures(server_factory: Callable[..., Any]) -> None:
    server = server_factory("--metrics-bind", "127.0.0.1:0")
    base = metrics_url(server)
    # Traffic while top watches: one stalled download (a stall, an active stream) and a
    # stream of small requests.
    stalled = RawH2Client(server.port, auto_ack=False)
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(http1=False, http2=True, timeout=10) as client:
            while not stop.is_set():
                client.get(f"{server.url}/mib.bin")

    worker = threading.Thread(target=traffic, daemon=True)
    try:
        stream_id = stalled.request("/mib.bin")
        assert stalled.until(lambda: len(stalled.responses[stream_id].body) >= 65535)
        worker.start()
        done = run_h2stream("top", "--metrics", base, "--iterations", "2", "--interval", "0.5")
    finally:
        stop.set()
        worker.join(15)
        stalled.close()
    assert done.returncode == 0, done.stderr
    screens = re.split(r"(?m)^(?=h2stream top)", done.stdout.strip())[1:]
    assert len(screens) == 2, done.stdout
    first, second = screens
    assert "rates from the next refresh" in first, done.stdout
    assert "last 0." in second or "last 1." in second, done.stdout
    throughput = re.search(r"throughput\s+([\d.]+) (B|KiB|MiB|GiB)/s", second)
    assert throughput and float(throughput.group(1)) > 0, second
    assert re.search(r"requests\s+[\d.]+ K?/s\s+total \d+", second), second
    active = re.search(r"active\s+connections (\d+)\s+streams (\d+)", second)
    assert active and int(active.group(1)) >= 1 and int(active.group(2)) >= 1, second
    stalls = re.search(r"total (\d+)\s+waiting", second)
    assert stalls and int(stalls.group(1)) >= 1, second
    memory = re.search(r"memory\s+([\d.]+) (MiB|GiB)", second)
    assert memory and float(memory.group(1)) > 1, second
    assert "resets sent" in second and "goaway" in second


def test_top_in_a_terminal_redraws(server_factory: Callable[..., Any]) -> None:
    server = server_factory("--metrics-bind", "127.0.0.1:0")
    base = metrics_url(server)
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            h2stream_command(
                "top",
                "--metrics",
                base.removeprefix("http://"),
                "--iterations",
                "2",
                "--interval",
                "0.2",
            ),
            stdout=terminal,
            stderr=subprocess.PIPE,
            cwd=REPO,
        )
        os.close(terminal)
        terminal = -1
        output = b""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        assert proc.wait(30) == 0
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    text = output.decode()
    # Two screens, each drawn from the top of a cleared terminal.
    assert text.count(CLEAR) == 2, text
    assert text.count("h2stream top") == 2 and "memory" in text


def test_top_reports_an_unreachable_server() -> None:
    done = run_h2stream("top", "--metrics", "http://127.0.0.1:9/metrics", "--iterations", "1")
    assert done.returncode == 1
    assert "cannot scrape" in done.stdout
