"""Shared fixtures: generated test files, and real h2stream servers on loopback.

Two kinds of server: a child process (``ServerProcess``: the real CLI, measured with psutil,
stopped by pid) and an in-process server on its own thread and loop (``InProcessServer``: the
same code, with the process-wide counters readable by the test).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from h2stream.config import Config, parse_bind
from h2stream.handlers.static import StaticFiles
from h2stream.runtime.server import Server, new_event_loop

REPO = Path(__file__).resolve().parent.parent
LISTEN_LINE = re.compile(r"listening on (https?)://(\[[^\]]+\]|[^:/]+):(\d+)")

# name -> size: the sizes the integrity tests fetch (frame-boundary cases around 16 KiB).
SIZES = {
    "empty.bin": 0,
    "one.bin": 1,
    "f16383.bin": 16383,
    "f16384.bin": 16384,
    "f16385.bin": 16385,
    "kib.bin": 1024,
    "mib.bin": 1 << 20,
    "f100m.bin": 100 << 20,
    "f256m.bin": 256 << 20,
}


def _write_pattern(path: Path, size: int) -> None:
    """Fill a file fast with bytes that differ at every offset from one MiB to the next (one
    random MiB, rotated by a different amount each time), so that bytes from the wrong place
    in the file change the hash, not only bytes from elsewhere."""
    block = os.urandom(1 << 20)
    with open(path, "wb") as out:
        written = 0
        index = 0
        while written < size:
            shift = (index * 65599 + 4093) % len(block)
            chunk = block[shift:] + block[:shift]
            n = min(len(chunk), size - written)
            out.write(chunk[:n])
            written += n
            index += 1


@pytest.fixture(scope="session")
def files_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    for name, size in SIZES.items():
        _write_pattern(root / name, size)
    (root / "hello.txt").write_text("hello, h2stream\n")
    (root / "docs").mkdir()
    (root / "docs" / "index.html").write_text("<!doctype html><title>index</title>\n")
    (root / "space name.txt").write_text("spaces\n")
    return root


@pytest.fixture(scope="session")
def digests(files_root: Path) -> dict[str, str]:
    return {name: sha256_file(files_root / name) for name in SIZES}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class ServerProcess:
    """``python -m h2stream serve`` as a child process; stopped by its pid."""

    def __init__(self, root: Path, *args: str, env: dict[str, str] | None = None) -> None:
        command = [sys.executable, "-m", "h2stream", "serve", str(root), *args]
        if not any(a == "--bind" or a.startswith("--bind=") for a in args):
            command += ["--bind", "127.0.0.1:0"]
        self._launch(command, env)

    def _launch(
        self,
        command: list[str],
        env: dict[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        """Start ``command`` and wait for its listening line (subclasses build the command)."""
        self.command = command
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, **(env or {})},
            preexec_fn=preexec_fn,
        )
        self.pid = self.proc.pid
        self.urls: list[str] = []
        self.stderr_lines: list[str] = []
        self._read_listen_lines()
        self.url = self.urls[0]
        self.port = int(self.url.rsplit(":", 1)[1])
        self.ps = psutil.Process(self.pid)

    def _read_listen_lines(self) -> None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            match = LISTEN_LINE.search(line)
            if match:
                scheme, host, port = match.groups()
                self.urls.append(f"{scheme}://{host}:{port}")
                # One line per listener; the CLI default here is one --bind.
                break
        if not self.urls:
            self.stop()
            raise RuntimeError(
                f"server did not start: {self.proc.stderr.read() if self.proc.stderr else ''}"
            )
        threading.Thread(target=self._drain_output, daemon=True).start()

    def _drain_output(self) -> None:
        # Keep reading so the child never blocks on a full pipe.
        if self.proc.stderr is not None:
            for line in self.proc.stderr:
                self.stderr_lines.append(line)

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def fd_count(self) -> int:
        return self.ps.num_fds()

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)


@pytest.fixture
def server_factory(files_root: Path) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(
        *args: str, root: Path | None = None, env: dict[str, str] | None = None
    ) -> ServerProcess:
        server = ServerProcess(root or files_root, *args, env=env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def h2c_server(files_root: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(files_root)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tls_server(files_root: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(files_root, "--self-signed")
    yield server
    server.stop()


class InProcessServer:
    """The real server on a thread of the test process, so tests can read its counters."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.loop = new_event_loop("auto")
        self.server = Server(config, StaticFiles(config.root))
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.call(self.server.start(announce=lambda line: None))
        scheme, host, port = self.server.addresses[0]
        self.url = f"{scheme}://{host}:{port}"
        self.port = port

    def call(self, coro: object, timeout: float = 30) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.call(self.server.drain(), timeout=self.config.graceful_timeout + 10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture
def inprocess_factory(files_root: Path) -> Iterator[Callable[..., InProcessServer]]:
    started: list[InProcessServer] = []

    def start(**changes: object) -> InProcessServer:
        config = Config(
            root=str(files_root), binds=(parse_bind("127.0.0.1:0"),), graceful_timeout=2.0
        )
        server = InProcessServer(config.replace(**changes))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def require(command: str) -> str:
    path = shutil.which(command)
    if path is None and os.environ.get("CI"):
        pytest.fail(f"{command} is not installed: CI must install it (tools/run-tests)")
    if path is None:
        pytest.skip(f"{command} is not installed (tools/run-tests installs it)")
    return path
