"""Unix domain socket listeners and systemd socket activation, with real clients.

A ``--bind unix:`` socket serves curl (``--unix-socket``, HTTP/1.1 and h2c) and h2load
(``-B unix:``), with its mode, one socket shared by every worker under the supervisor, a stale
file replaced, a live one or a non-socket never touched, and the file removed on exit.
Socket activation runs under Debian's ``systemd-socket-activate`` (which execs the server in
its own process, so LISTEN_PID is the server's pid), and under an equivalent launcher that
binds port 0 and execs the supervisor; sd_notify READY and STOPPING reach a NOTIFY_SOCKET.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.commands import REPO, h2stream_command, require, run_h2stream
from support.servers import ServerProcess, wait_for_workers

ROOT_FILE = "hello.txt"


def curl_unix(path: Path, *args: str) -> str:
    result = subprocess.run(
        [require("curl"), "-s", "-m", "20", "--unix-socket", str(path), *args,
         f"http://localhost/{ROOT_FILE}"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return result.stdout


@pytest.fixture
def sock_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # A short directory: sun_path holds 107 bytes, pytest's tmp paths can be long.
    path = Path(f"/tmp/h2s-{os.getpid()}-{time.monotonic_ns() % 10**9}")
    path.mkdir()
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def test_unix_socket_serves_curl_and_h2load(
    server_factory: Callable[..., ServerProcess], sock_dir: Path, files_root: Path
) -> None:
    path = sock_dir / "h2stream.sock"
    expected = (files_root / ROOT_FILE).read_text()
    server = server_factory(
        "--bind", f"unix:{path}", "--bind", "127.0.0.1:0", "--unix-socket-mode", "0600"
    )
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert curl_unix(path) == expected
    assert curl_unix(path, "--http2-prior-knowledge") == expected
    result = subprocess.run(
        [require("h2load"), "-n", "200", "-c", "4", "-m", "4", "-B", f"unix:{path}",
         f"http://localhost/{ROOT_FILE}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "200 succeeded, 0 failed, 0 errored" in result.stdout, result.stdout
    assert server.stop() == 0
    assert not path.exists(), "the socket file was left behind"


def test_stale_socket_replaced_live_one_and_other_files_kept(
    server_factory: Callable[..., ServerProcess], sock_dir: Path, files_root: Path
) -> None:
    path = sock_dir / "stale.sock"
    # A server that died leaves its socket file: bound, nobody listening.
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()
    server = server_factory("--bind", f"unix:{path}", "--bind", "127.0.0.1:0")
    assert curl_unix(path) == (files_root / ROOT_FILE).read_text()
    # A second server on the live socket refuses to start, and takes nothing away.
    second = run_h2stream("serve", str(files_root), "--bind", f"unix:{path}", timeout=20)
    assert second.returncode == 1 and "answers on" in second.stderr, second.stderr
    assert curl_unix(path) == (files_root / ROOT_FILE).read_text()
    server.stop()
    # A file that is not a socket is never removed.
    other = sock_dir / "data.sock"
    other.write_text("precious")
    third = run_h2stream("serve", str(files_root), "--bind", f"unix:{other}", timeout=20)
    assert third.returncode == 1 and "not a socket" in third.stderr, third.stderr
    assert other.read_text() == "precious"


def test_supervisor_workers_share_one_unix_socket(
    server_factory: Callable[..., ServerProcess], sock_dir: Path, files_root: Path
) -> None:
    path = sock_dir / "workers.sock"
    server = server_factory("--bind", f"unix:{path}", "--bind", "127.0.0.1:0", "--workers", "2")
    expected = (files_root / ROOT_FILE).read_text()
    for _ in range(8):
        assert curl_unix(path) == expected
    # One listening socket, made once by the supervisor: every worker holds that same one.
    inodes = _listening(path)
    assert len(inodes) == 1, inodes
    workers = server.ps.children()
    assert len(workers) == 2
    for worker in workers:
        fds = os.listdir(f"/proc/{worker.pid}/fd")
        assert inodes & {os.readlink(f"/proc/{worker.pid}/fd/{fd}") for fd in fds}, worker.pid
    # A reload keeps the socket: new workers accept on the same one, the file stays.
    server.signal(signal.SIGHUP)
    wait_for_workers(server.pid, 2, without={w.pid for w in workers})
    assert _listening(path) == inodes
    assert curl_unix(path) == expected
    assert server.stop() == 0
    assert not path.exists()


def _listening(path: Path) -> set[str]:
    """The listening sockets bound to ``path`` (as /proc/<pid>/fd links name them). Accepted
    connections show the path too, until the worker has closed them: those are left out by
    their flags (only a listening socket has __SO_ACCEPTCON, 0x10000)."""
    with open("/proc/net/unix") as table:
        rows = [f for f in map(str.split, table) if f[-1] == str(path)]
    return {f"socket:[{f[6]}]" for f in rows if int(f[3], 16) & 0x10000}


def _notify_socket(sock_dir: Path) -> socket.socket:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(sock_dir / "notify"))
    notify.settimeout(20)
    return notify


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_systemd_socket_activate(sock_dir: Path, files_root: Path) -> None:
    """Debian's systemd-socket-activate binds, waits for the first connection, then execs the
    server in its own process: the server takes fds 3 and 4 instead of --bind."""
    launcher = require("systemd-socket-activate")
    path = sock_dir / "activated.sock"
    port = _free_port()
    notify = _notify_socket(sock_dir)
    command = [
        launcher, "-l", f"127.0.0.1:{port}", "-l", str(path), "--fdname=web:local",
        "-E", f"NOTIFY_SOCKET={sock_dir / 'notify'}",
        *h2stream_command("serve", str(files_root), "--bind", "127.0.0.1:1"),
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None and proc.stdout is not None
        for _ in range(2):
            assert "Listening on" in proc.stderr.readline()
        # The first connection starts the server; it waits in the accept queue meanwhile.
        expected = (files_root / ROOT_FILE).read_text()
        assert curl_unix(path) == expected
        lines = [proc.stdout.readline() for _ in range(2)]
        assert f"http://127.0.0.1:{port} (HTTP/1.1, h2c; systemd socket 'web')" in lines[0]
        assert f"unix:{path} (HTTP/1.1, h2c; systemd socket 'local')" in lines[1]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        ready = notify.recv(4096).decode()
        assert "READY=1" in ready and f"MAINPID={proc.pid}" in ready, ready
        proc.send_signal(signal.SIGTERM)
        assert "STOPPING=1" in notify.recv(4096).decode()
        assert proc.wait(20) == 0
        # The socket is systemd's: the server leaves its file alone.
        assert path.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        notify.close()


# An equivalent launcher: bind, put the sockets on fds 3 and 4, name them, and exec the server
# in this same process, so LISTEN_PID is the server's own pid (as systemd sets it).
LAUNCHER = """
import os, socket, sys
tcp = socket.socket()
tcp.bind(("127.0.0.1", 0))
tcp.listen(128)
unix = socket.socket(socket.AF_UNIX)
unix.bind(sys.argv[1])
unix.listen(128)
for fd, sock in ((3, tcp), (4, unix)):
    if sock.fileno() != fd:
        os.dup2(sock.fileno(), fd)
    os.set_inheritable(fd, True)
print(tcp.getsockname()[1], flush=True)
os.environ.update(LISTEN_FDS="2", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="web:local")
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""


def test_socket_activation_under_the_supervisor(sock_dir: Path, files_root: Path) -> None:
    path = sock_dir / "launched.sock"
    notify = _notify_socket(sock_dir)
    command = [sys.executable, "-c", LAUNCHER, str(path),
               *h2stream_command("serve", str(files_root), "--workers", "2")[1:]]  # fmt: skip
    proc = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "NOTIFY_SOCKET": str(sock_dir / "notify")},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        lines = [proc.stdout.readline() for _ in range(2)]
        assert re.search(rf"http://127.0.0.1:{port} \(systemd socket 'web'\)", lines[0]), lines
        assert f"unix:{path} (systemd socket 'local')" in lines[1], lines
        assert "READY=1" in notify.recv(4096).decode()
        expected = (files_root / ROOT_FILE).read_text()
        for _ in range(4):
            assert curl_unix(path) == expected
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        proc.send_signal(signal.SIGTERM)
        assert "STOPPING=1" in notify.recv(4096).decode()
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        notify.close()


def test_activation_for_another_pid_is_ignored(
    server_factory: Callable[..., ServerProcess], files_root: Path
) -> None:
    """LISTEN_PID names another process (a parent's environment, inherited): --bind serves."""
    server = server_factory(env={"LISTEN_FDS": "2", "LISTEN_PID": "1", "LISTEN_FDNAMES": "x:y"})
    assert server.url.startswith("http://127.0.0.1:")
