"""How ASGI response bodies leave: Starlette's FileResponse (pathsend) by sendfile on h2c and
HTTP/1.1, counted by the server's own metrics; the app paused by flow control, so clients that
never read hold no memory; the same app over HTTP/1.1 (curl, httpx).
"""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support import frames
from support.commands import REPO
from support.curl import curl_fetch, run_curl
from support.h2load import assert_all_succeeded, h2load
from support.metrics import metrics_url, scrape
from support.polling import wait_until
from support.servers import ServerProcess

pytest.importorskip("starlette")

APPS = REPO / "tests"
APP = "asgi_apps.starlette_app:app"
SIZE = 256 << 20
BODY_BYTES = "h2stream_response_body_bytes_total"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("asgi-transfer")
    block = hashlib.sha256(b"transfer").digest() * 32768
    digest = hashlib.sha256()
    with open(root / "big.bin", "wb") as f:
        for i in range(SIZE >> 20):
            chunk = block[i % 89 :] + block[: i % 89]
            digest.update(chunk)
            f.write(chunk)
    (root / "big.sha256").write_text(digest.hexdigest())
    return root


@pytest.fixture(scope="module")
def server(data: Path) -> Iterator[tuple[ServerProcess, str]]:
    proc = ServerProcess(
        None,
        "--app",
        APP,
        "--metrics-bind",
        "127.0.0.1:0",
        env={"ASGI_ROOT": str(data)},
        cwd=APPS,
    )
    try:
        yield proc, metrics_url(proc)
    finally:
        proc.stop()


def _sent(metrics: str) -> dict[str, float]:
    return scrape(metrics).by_label(BODY_BYTES, "mode")


def test_file_response_sendfile_h2c_1m_frames(server: tuple[ServerProcess, str]) -> None:
    proc, metrics = server
    before = _sent(metrics)
    run = h2load(proc.url + "/file/big.bin", "-n", "1", "-c", "1", "-f", "1048576", timeout=120)
    assert_all_succeeded(run, 1)
    after = _sent(metrics)
    by_sendfile = after.get("sendfile", 0) - before.get("sendfile", 0)
    # Copied: the last frame (END_STREAM), and a small frame whenever the transport still
    # holds bytes at a turn; a frame the socket takes only in part ends by sendfile too.
    assert by_sendfile >= 0.95 * SIZE, (before, after)


def test_file_response_http1(server: tuple[ServerProcess, str], data: Path) -> None:
    proc, metrics = server
    before = _sent(metrics)
    fetched, code, version = curl_fetch(proc.url + "/file/big.bin", "--http1.1")
    assert (code, version) == ("200", "1.1")
    assert fetched.sha256 == (data / "big.sha256").read_text()
    after = _sent(metrics)
    by_sendfile = after.get("sendfile", 0) - before.get("sendfile", 0)
    assert by_sendfile >= 0.95 * SIZE, (before, after)


def test_http1_scope_upload_and_stream(server: tuple[ServerProcess, str], tmp_path: Path) -> None:
    proc, _ = server
    with httpx.Client(http1=True, http2=False, timeout=30) as client:
        scope = client.get(proc.url + "/scope/p?q=1").json()
        assert (scope["http_version"], scope["query_string"]) == ("1.1", "q=1")
        lines = client.get(proc.url + "/numbers", params={"n": 3000}).content.splitlines()
        assert len(lines) == 3000
    path = tmp_path / "up.bin"
    path.write_bytes(b"u" * (3 << 20))
    result = run_curl("--http1.1", "-T", str(path), proc.url + "/upload")
    assert json.loads(result.stdout)["size"] == 3 << 20


def test_http1_error_after_start_closes(server: tuple[ServerProcess, str]) -> None:
    proc, _ = server
    result = run_curl("--http1.1", proc.url + "/fail-after")
    assert result.returncode != 0  # the body is cut, never ends as complete


def _stalled_client(port: int) -> socket.socket:
    """Asks for the endless stream with a 64 KiB window and never reads a byte."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(
        frames.PREFACE + frames.settings() + frames.headers(1, frames.request_block("/forever"))
    )
    return sock


def test_clients_that_never_read_hold_no_memory(data: Path) -> None:
    proc = ServerProcess(None, "--app", APP, env={"ASGI_ROOT": str(data)}, cwd=APPS)
    clients: list[socket.socket] = []
    try:
        # Warm up: the first requests import and allocate what every later one reuses.
        for _ in range(5):
            clients.append(_stalled_client(proc.port))
        wait_until(lambda: False, 1.0)
        before = proc.rss()
        for _ in range(200):
            clients.append(_stalled_client(proc.port))
        wait_until(lambda: False, 3.0)  # the streams run until flow control stops them
        grown = proc.rss() - before
        # Each stalled client costs its connection and one paused app task (about 33 KiB
        # here; the app's chunk is shared); a producer that were not paused by flow control
        # would have piled up its endless body instead. Issue 15's bound: under 10 MiB.
        assert grown < 10 << 20, f"RSS grew {grown >> 10} KiB for 200 stalled clients"
    finally:
        for sock in clients:
            sock.close()
        proc.stop()
