"""TLS reads ask for one record at a time (runtime/tls.py RecordSizedReads): the event loop's
SSL layer asked for 256 KiB per read, which glibc served with a fresh mmap each time. Counted
on a real server process with strace while h2load downloads over TLS with 64 KiB windows (a
read of a WINDOW_UPDATE or two per 64 KiB); uploads that span many records still arrive whole.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.curl import curl_command
from support.h2load import assert_all_succeeded, h2load
from support.servers import ServerProcess
from support.strace import Strace

DOWNLOAD = 4 << 20
# An anonymous mapping at least this large is a read buffer of the old size (256 KiB plus the
# bytes object's header, rounded to pages); the worker's own pools never map one per read.
LARGE_MAP = 256 * 1024
_MMAP = re.compile(r"\bmmap\(NULL, (\d+),")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    root = tmp_path / "root"
    root.mkdir()
    (root / "4m.bin").write_bytes(os.urandom(DOWNLOAD))
    process = ServerProcess(root, "--self-signed")
    yield process
    process.stop()


class Syscalls(Strace):
    """The server's mmap calls and its event loop's waits."""

    def __init__(self, pid: int, log: Path) -> None:
        super().__init__(pid, log, "mmap,epoll_wait,epoll_pwait")

    def large_maps(self) -> int:
        return sum(
            int(m.group(1)) >= LARGE_MAP for line in self.lines() if (m := _MMAP.search(line))
        )


def _attached(calls: Syscalls) -> None:
    """Until strace records a call: the idle loop wakes for its timers within a second. (No
    TLS request may probe for it: one read that ends without data frees a whole 256 KiB
    buffer, after which glibc raises its mmap threshold for the process's life and the old
    reads would map no more, hiding what this test looks for.)"""
    deadline = time.monotonic() + 20
    while not calls.lines():
        assert time.monotonic() < deadline, "strace never attached"
        time.sleep(0.05)


def test_window_bound_tls_download_maps_no_read_buffers(
    server: ServerProcess, tmp_path: Path
) -> None:
    url = f"https://127.0.0.1:{server.port}/4m.bin"
    calls = Syscalls(server.pid, tmp_path / "strace.log")
    try:
        _attached(calls)
        before = calls.large_maps()
        # 64 KiB windows: the server reads the client's credit about 64 times per download.
        run = h2load(url, "-n", "2", "-c", "1", "-m", "1", "-w", "16", "-W", "16", timeout=60)
        assert_all_succeeded(run, 2)
        assert run.data_bytes >= 2 * DOWNLOAD
        time.sleep(0.2)  # strace writes its log as it goes
        maps = calls.large_maps() - before
    finally:
        calls.stop()
    # Before: two 256 KiB maps per read of the client's credit, over 200 for these downloads.
    assert maps <= 8, f"{maps} mappings of >= 256 KiB during two window-bound downloads"


def test_tls_upload_of_many_records_arrives_whole(server: ServerProcess, tmp_path: Path) -> None:
    upload = tmp_path / "up.bin"
    upload.write_bytes(os.urandom(3_000_000))
    command = curl_command(
        "--http2", "-k", "--data-binary", f"@{upload}", f"https://127.0.0.1:{server.port}/_h2stream/sink",
        max_time=60,
    )  # fmt: skip
    done = subprocess.run(command, capture_output=True, timeout=70, check=True)
    assert json.loads(done.stdout)["bytes"] == 3_000_000
