"""``--workers N``: worker processes on one port, restarts, the drain of all, ``--pid-file``.

The supervisor and its workers are real processes; which worker holds a connection is read
from the kernel (psutil's connection table per worker pid), not from anything the server
says about itself.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from support.clients import RawH2Client, connection_refused
from support.commands import run_h2stream
from support.curl import curl_command
from support.files import SIZES, sha256_file
from support.metrics import metrics_url, readyz_status, scrape, served_2xx
from support.polling import wait_until
from support.servers import ServerProcess, established_by_pid, wait_for_workers

CONNECTIONS = 16


def fetch_hello(client: RawH2Client) -> None:
    stream_id = client.request("/hello.txt")
    response = client.responses[stream_id]
    assert client.until(lambda: response.ended, timeout=10)
    assert response.status == 200
    assert bytes(response.body) == b"hello, h2stream\n"


def test_two_workers_share_the_port_and_both_serve(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory("--workers", "2")
    pids = wait_for_workers(server.pid, 2)
    clients = [RawH2Client(server.port) for _ in range(CONNECTIONS)]
    try:
        for client in clients:
            fetch_hello(client)
        counts = established_by_pid(pids, server.port)
        # The kernel spreads connections over the SO_REUSEPORT sockets: with 16 connections
        # the chance that one worker gets none is 2 ** -15.
        assert sum(counts.values()) == CONNECTIONS, counts
        assert all(count > 0 for count in counts.values()), counts
        # The supervisor itself accepts nothing.
        assert established_by_pid([server.pid], server.port)[server.pid] == 0
    finally:
        for client in clients:
            client.close()


def test_a_killed_worker_is_restarted_and_serves(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory("--workers", "2")
    before = wait_for_workers(server.pid, 2)
    victim = min(before)
    survivor = max(before)
    psutil.Process(victim).send_signal(signal.SIGKILL)
    after = wait_for_workers(server.pid, 2, without=[victim])
    (replacement,) = after - {survivor}
    assert server.wait_for_log(f"(pid {victim}) was killed by SIGKILL")
    assert "restarting in" in server.log_text()
    # New connections land on either worker; the replacement must get and serve some.
    served = False
    clients = []
    try:
        for _ in range(40):
            client = RawH2Client(server.port)
            clients.append(client)
            fetch_hello(client)
            if established_by_pid([replacement], server.port)[replacement] > 0:
                served = True
                break
    finally:
        for client in clients:
            client.close()
    assert served, "the restarted worker never accepted a connection"


def test_a_crash_loop_backs_off(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory("--workers", "2")
    pids = wait_for_workers(server.pid, 2)
    first = min(pids)
    psutil.Process(first).send_signal(signal.SIGKILL)
    (second_pid,) = wait_for_workers(server.pid, 2, without=[first]) - pids
    # Dying again soon after a restart is a crash loop: the next delay doubles.
    psutil.Process(second_pid).send_signal(signal.SIGKILL)
    assert server.wait_for_log(f"(pid {second_pid}) was killed by SIGKILL after")
    line = next(x for x in server.stderr_lines if f"(pid {second_pid}) was killed" in x)
    assert "restarting in 1.0 s" in line, line
    assert wait_for_workers(server.pid, 2)


def test_sigterm_drains_every_worker_and_exits_0(
    server_factory: Callable[..., ServerProcess], files_root: Path, tmp_path: Path
) -> None:
    pid_file = tmp_path / "h2stream.pid"
    server = server_factory(
        "--workers", "2", "--metrics-bind", "127.0.0.1:0", "--pid-file", str(pid_file)
    )
    metrics = metrics_url(server)
    pids = wait_for_workers(server.pid, 2)
    assert pid_file.read_text().strip() == str(server.pid)
    assert readyz_status(metrics) == 200
    # Two paced downloads of 100 MiB (~2.5 s each), in flight when the stop arrives.
    outputs = [tmp_path / f"download{i}.bin" for i in range(2)]
    downloads = [
        subprocess.Popen(
            curl_command(
                "--http2-prior-knowledge",
                "--limit-rate",
                "40M",
                "-o",
                str(out),
                f"{server.url}/f100m.bin",
                max_time=60,
            ),
            stderr=subprocess.PIPE,
        )
        for out in outputs
    ]
    try:
        assert wait_until(lambda: all(o.exists() and o.stat().st_size > 0 for o in outputs), 10)
        holders = established_by_pid(pids, server.port)
        server.signal(signal.SIGTERM)
        # Draining: not ready any more, and nothing accepts new connections.
        assert wait_until(lambda: readyz_status(metrics) == 503, 5)
        assert wait_until(lambda: connection_refused(server.port), 5), (
            "still accepting while draining"
        )
        for download in downloads:
            assert download.wait(30) == 0, download.stderr.read() if download.stderr else ""
    finally:
        for download in downloads:
            if download.poll() is None:
                download.kill()
                download.wait(5)
    assert server.wait(20) == 0
    for out in outputs:
        assert out.stat().st_size == SIZES["f100m.bin"]
        assert sha256_file(out) == sha256_file(files_root / "f100m.bin")
    assert not any(psutil.pid_exists(pid) and _alive(pid) for pid in pids)
    assert not pid_file.exists()
    assert sum(holders.values()) == 2, holders


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_pid_file_of_a_single_process_and_a_running_server_is_not_overwritten(
    server_factory: Callable[..., ServerProcess], files_root: Path, tmp_path: Path
) -> None:
    pid_file = tmp_path / "one.pid"
    server = server_factory("--pid-file", str(pid_file))
    assert pid_file.read_text().strip() == str(server.pid)
    second = run_h2stream(
        "serve",
        str(files_root),
        "--bind",
        "127.0.0.1:0",
        "--pid-file",
        str(pid_file),
        "--workers",
        "2",
    )
    assert second.returncode == 1
    assert f"already running as pid {server.pid}" in second.stderr
    assert pid_file.read_text().strip() == str(server.pid)
    server.signal(signal.SIGTERM)
    assert server.wait(15) == 0
    assert not pid_file.exists()


def test_a_worker_that_cannot_start_fails_the_start(files_root: Path) -> None:
    started = time.monotonic()
    result = run_h2stream(
        "serve",
        str(files_root),
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--app",
        "no_such_module_h2stream:app",
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "cannot import no_such_module_h2stream" in result.stderr
    assert "listening on" not in result.stdout
    assert time.monotonic() - started < 30


def test_workers_auto_is_one_per_core(server_factory: Callable[..., ServerProcess]) -> None:
    cores = len(psutil.Process().cpu_affinity() or [])
    if cores < 2:
        pytest.skip("one core: auto means a single process")
    server = server_factory("--workers", "auto")
    assert len(wait_for_workers(server.pid, cores)) == cores


def test_workers_exit_when_the_supervisor_is_killed(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory("--workers", "2", "--graceful-timeout", "2")
    pids = wait_for_workers(server.pid, 2)
    server.signal(signal.SIGKILL)
    server.wait(10)
    # Their lifeline pipe reads end-of-file: they drain and exit rather than serve unsupervised.
    assert wait_until(lambda: not any(_alive(pid) for pid in pids), 15), pids


def test_systemd_notify(server_factory: Callable[..., ServerProcess], tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(path)
        notify.settimeout(20)
        server = server_factory("--supervise", env={"NOTIFY_SOCKET": path})
        assert notify.recv(4096).decode() == f"READY=1\nMAINPID={server.pid}"
        server.signal(signal.SIGHUP)
        assert notify.recv(4096).decode().startswith("RELOADING=1\nMONOTONIC_USEC=")
        assert notify.recv(4096).decode() == "READY=1"
        server.signal(signal.SIGTERM)
        assert notify.recv(4096).decode() == "STOPPING=1"
        assert server.wait(15) == 0


def test_metrics_are_summed_over_workers_and_survive_a_dead_worker(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory("--workers", "2", "--metrics-bind", "127.0.0.1:0")
    metrics = metrics_url(server)
    pids = wait_for_workers(server.pid, 2)
    clients = [RawH2Client(server.port) for _ in range(CONNECTIONS)]
    try:
        for client in clients:
            fetch_hello(client)
        counts = established_by_pid(pids, server.port)
        assert all(counts.values()), counts
        # Workers publish every half second; the sum covers both.
        assert wait_until(lambda: served_2xx(metrics) == CONNECTIONS, 5)
        text = scrape(metrics).text
        for pid, count in counts.items():
            assert f'h2stream_worker_connections_active{{worker="{pid}"}} {count}.0' in text
    finally:
        for client in clients:
            client.close()
    # A killed worker's counts stay in the sum (counters never go backwards).
    psutil.Process(min(pids)).send_signal(signal.SIGKILL)
    wait_for_workers(server.pid, 2, without=[min(pids)])
    assert served_2xx(metrics) == CONNECTIONS
