"""A Starlette app served by ``h2stream serve --app``: scope, lifespan, FileResponse (pathsend,
zero-copy on h2c, the copy path on TLS), StreamingResponse, uploads, errors, client resets.

Real clients (curl, nghttp, httpx) over h2c and TLS; bodies checked by SHA-256. The app
writes lifecycle events to a file the tests read (its ``finally`` blocks, lifespan).
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.commands import REPO, require, run_h2stream
from support.curl import curl_fetch, curl_status, run_curl
from support.polling import wait_until
from support.servers import ServerProcess

pytest.importorskip("starlette")

APPS = REPO / "tests"
APP = "asgi_apps.starlette_app:app"
BIG = 64 << 20


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("asgi-data")
    block = hashlib.sha256(b"asgi").digest() * 32768  # 1 MiB, not compressible by accident
    with open(root / "big.bin", "wb") as f:
        for i in range(BIG >> 20):
            f.write(block[i % 97 :] + block[: i % 97])
    (root / "small.txt").write_bytes(b"small file\n")
    return root


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _events(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("asgi-events") / "events"


@pytest.fixture(scope="module")
def server(data: Path, events: Path) -> Iterator[ServerProcess]:
    env = {"ASGI_ROOT": str(data), "ASGI_EVENTS": str(events)}
    proc = ServerProcess(None, "--app", APP, "--max-frame-size", "1048576", env=env, cwd=APPS)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def tls_server(data: Path) -> Iterator[ServerProcess]:
    env = {"ASGI_ROOT": str(data)}
    proc = ServerProcess(None, "--app", APP, "--self-signed", env=env, cwd=APPS)
    yield proc
    proc.stop()


def test_lifespan_state_reaches_requests(server: ServerProcess, events: Path) -> None:
    code, body, status = curl_status(server.url + "/hello", "--http2-prior-knowledge")
    assert (code, body, status) == (0, b"hello from lifespan", "200 2")
    assert "startup" in _events(events)


def test_scope_fields(server: ServerProcess) -> None:
    result = run_curl("--http2-prior-knowledge", server.url + "/scope/a%20b/c?x=1&y=%20")
    scope = json.loads(result.stdout)
    assert scope["http_version"] == "2"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/scope/a b/c"
    assert scope["raw_path"] == "/scope/a%20b/c"
    assert scope["query_string"] == "x=1&y=%20"
    assert scope["root_path"] == ""
    assert scope["host"] == server.url.split("//", 1)[1]
    assert scope["client"][0] == "127.0.0.1"
    assert "http.response.pathsend" in scope["extensions"]


def test_scheme_over_tls(tls_server: ServerProcess) -> None:
    result = run_curl("-k", "--http2", tls_server.url + "/scope/x")
    scope = json.loads(result.stdout)
    assert (scope["scheme"], scope["http_version"]) == ("https", "2")


@pytest.mark.parametrize("kind", ["h2c", "tls"])
def test_file_response_whole(
    kind: str, server: ServerProcess, tls_server: ServerProcess, data: Path
) -> None:
    if kind == "h2c":
        fetched, code, version = curl_fetch(server.url + "/file/big.bin", "--http2-prior-knowledge")
    else:
        fetched, code, version = curl_fetch(tls_server.url + "/file/big.bin", "-k", "--http2")
    assert (code, version) == ("200", "2")
    assert fetched.size == BIG
    assert fetched.sha256 == _sha(data / "big.bin")


def test_file_response_nghttp_and_head(server: ServerProcess, data: Path) -> None:
    nghttp = require("nghttp")
    result = subprocess.run(
        [nghttp, "-n", "-s", "-w", "16", server.url + "/file/small.txt"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    head = run_curl("--http2-prior-knowledge", "-I", server.url + "/file/big.bin", text=True)
    assert f"content-length: {BIG}" in head.stdout
    assert head.stdout.startswith("HTTP/2 200")


def test_streaming_response(server: ServerProcess, events: Path) -> None:
    with httpx.Client(http1=False, http2=True, timeout=30) as client:
        response = client.get(server.url + "/numbers", params={"n": 20000, "size": 100})
    lines = response.content.splitlines()
    assert response.status_code == 200
    assert len(lines) == 20000
    assert lines[-1].startswith(b"19999:")


@pytest.mark.parametrize("size", [0, 1, 5 << 20])
def test_upload_stream(server: ServerProcess, tmp_path: Path, size: int) -> None:
    path = tmp_path / "up.bin"
    path.write_bytes(hashlib.sha256(b"up").digest() * (size // 32) + b"z" * (size % 32))
    result = run_curl("--http2-prior-knowledge", "-T", str(path), server.url + "/upload")
    answer = json.loads(result.stdout)
    assert answer == {"size": size, "sha256": _sha(path)}


def test_slow_upload_reader(server: ServerProcess, tmp_path: Path) -> None:
    """A handler that reads slowly still gets the whole body (credit follows its reads)."""
    path = tmp_path / "up.bin"
    path.write_bytes(b"s" * (2 << 20))
    url = server.url + "/upload?delay=0.002"
    result = run_curl("--http2-prior-knowledge", "-T", str(path), url, max_time=60)
    assert json.loads(result.stdout)["size"] == 2 << 20


def test_error_before_start_is_500(server: ServerProcess) -> None:
    code, _, status = curl_status(server.url + "/fail", "--http2-prior-knowledge")
    assert (code, status) == (0, "500 2")
    assert server.wait_for_log("handler bug")


def test_error_after_start_resets(server: ServerProcess) -> None:
    result = run_curl("--http2-prior-knowledge", server.url + "/fail-after")
    # RST_STREAM(INTERNAL_ERROR): curl reports the stream error (92), never a complete body.
    assert result.returncode == 92
    assert result.stdout.startswith(b"partial") or result.stdout == b""


def test_client_reset_runs_the_apps_finally(server: ServerProcess, events: Path) -> None:
    before = _events(events).count("forever finally")
    result = run_curl("--http2-prior-knowledge", server.url + "/forever", max_time=1)
    assert result.returncode == 28  # curl gave up: our server never ends /forever
    assert wait_until(lambda: _events(events).count("forever finally") > before, 10)
    # The server still answers afterwards.
    assert curl_status(server.url + "/hello", "--http2-prior-knowledge")[2] == "200 2"


def test_lifespan_shutdown_on_sigterm(data: Path, tmp_path: Path) -> None:
    events = tmp_path / "events"
    env = {"ASGI_ROOT": str(data), "ASGI_EVENTS": str(events)}
    proc = ServerProcess(None, "--app", APP, env=env, cwd=APPS)
    try:
        assert curl_status(proc.url + "/hello", "--http2-prior-knowledge")[2] == "200 2"
        proc.signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        proc.stop()
    assert _events(events) == ["startup", "shutdown"]


def test_failing_startup_exits_nonzero() -> None:
    result = run_h2stream(
        "serve",
        "--app",
        APP,
        "--bind",
        "127.0.0.1:0",
        env={"ASGI_FAIL_STARTUP": "1", "PYTHONPATH": str(APPS)},
    )
    assert result.returncode != 0
    assert "database unreachable" in result.stderr


def test_interface_native_refuses_an_asgi_app() -> None:
    result = run_h2stream(
        "serve", "--app", APP, "--interface", "native", env={"PYTHONPATH": str(APPS)}
    )
    assert result.returncode != 0
    assert "not an h2stream.App" in result.stderr


def test_root_path(data: Path) -> None:
    """Mounted under a prefix a proxy strips: path and raw_path carry it, Starlette routes
    by what follows it."""
    env = {"ASGI_ROOT": str(data)}
    proc = ServerProcess(None, "--app", APP, "--root-path", "/api", env=env, cwd=APPS)
    try:
        scope = json.loads(run_curl("--http2-prior-knowledge", proc.url + "/scope/x").stdout)
    finally:
        proc.stop()
    assert (scope["root_path"], scope["path"], scope["raw_path"]) == (
        "/api",
        "/api/scope/x",
        "/api/scope/x",
    )
