"""ASGI beyond Starlette: FastAPI (JSON, StreamingResponse, UploadFile), a raw ASGI 3 app
(trailers, zerocopysend of a file range, a response left unfinished), and what ``--app``
refuses. Real servers (``h2stream serve --app``) and real clients (curl, nghttp, httpx).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.commands import REPO, require, run_h2stream
from support.curl import curl_status, run_curl
from support.servers import ServerProcess

APPS = REPO / "tests"


@pytest.fixture(scope="module")
def fastapi_server() -> Iterator[ServerProcess]:
    pytest.importorskip("fastapi")
    pytest.importorskip("multipart")
    proc = ServerProcess(None, "--app", "asgi_apps.fastapi_app:app", cwd=APPS)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def range_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("asgi-raw") / "range.bin"
    path.write_bytes(hashlib.sha256(b"range").digest() * 65536)  # 2 MiB
    return path


@pytest.fixture(scope="module")
def raw_server(range_file: Path) -> Iterator[ServerProcess]:
    env = {"ASGI_FILE": str(range_file)}
    proc = ServerProcess(None, "--app", "asgi_apps.raw_app:app", env=env, cwd=APPS)
    yield proc
    proc.stop()


def test_fastapi_json_routes(fastapi_server: ServerProcess) -> None:
    with httpx.Client(http1=False, http2=True, timeout=15) as client:
        got = client.get(fastapi_server.url + "/items/7", params={"q": "x"})
        assert got.status_code == 200
        assert got.json() == {"item_id": 7, "q": "x"}
        posted = client.post(fastapi_server.url + "/items", json={"name": "a", "count": 21})
        assert posted.json() == {"name": "a", "double": 42}
        invalid = client.get(fastapi_server.url + "/items/not-a-number")
        assert invalid.status_code == 422
        assert client.get(fastapi_server.url + "/missing").status_code == 404


def test_fastapi_streaming(fastapi_server: ServerProcess) -> None:
    result = run_curl("--http2-prior-knowledge", fastapi_server.url + "/stream?n=5000")
    lines = result.stdout.splitlines()
    assert len(lines) == 5000
    assert json.loads(lines[-1]) == {"i": 4999}


def test_fastapi_upload_file(fastapi_server: ServerProcess, tmp_path: Path) -> None:
    path = tmp_path / "form.bin"
    path.write_bytes(hashlib.sha256(b"form").digest() * (3 << 15))  # 3 MiB
    result = run_curl(
        "--http2-prior-knowledge", "-F", f"file=@{path}", fastapi_server.url + "/upload"
    )
    answer = json.loads(result.stdout)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert answer == {"filename": "form.bin", "size": path.stat().st_size, "sha256": digest}


def test_trailers(raw_server: ServerProcess) -> None:
    nghttp = require("nghttp")
    result = subprocess.run(
        [nghttp, "-v", raw_server.url + "/trailers"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "recv (stream_id=13) x-checksum: abc" in result.stdout
    assert run_curl("--http2-prior-knowledge", raw_server.url + "/trailers").stdout == b"body,more"


def test_zerocopysend_range(raw_server: ServerProcess, range_file: Path) -> None:
    count = 1_500_000
    result = run_curl("--http2-prior-knowledge", f"{raw_server.url}/range?{count}")
    assert result.returncode == 0
    assert result.stdout == range_file.read_bytes()[100 : 100 + count]


def test_unfinished_response_is_reset(raw_server: ServerProcess) -> None:
    result = run_curl("--http2-prior-knowledge", raw_server.url + "/no-end")
    assert result.returncode == 92  # RST_STREAM(INTERNAL_ERROR), not a complete body
    assert raw_server.wait_for_log("without completing the response")
    assert curl_status(raw_server.url + "/x", "--http2-prior-knowledge")[2] == "404 2"


def test_neither_app_nor_asgi_is_refused() -> None:
    result = run_h2stream(
        "serve", "--app", "asgi_apps.raw_app:not_async", env={"PYTHONPATH": str(APPS)}
    )
    assert result.returncode != 0
    assert "not an h2stream.App or an ASGI 3 application" in result.stderr


@pytest.fixture(scope="module")
def quart_server() -> Iterator[ServerProcess]:
    pytest.importorskip("quart")
    proc = ServerProcess(None, "--app", "asgi_apps.quart_app:app", "--lifespan", "on", cwd=APPS)
    yield proc
    proc.stop()


def test_quart(quart_server: ServerProcess, tmp_path: Path) -> None:
    with httpx.Client(http1=False, http2=True, timeout=15) as client:
        got = client.get(quart_server.url + "/hello")
        assert got.json() == {"hello": "quart", "started": ["up"]}
        lines = client.get(quart_server.url + "/stream").content.splitlines()
        assert lines == [b"%d" % i for i in range(1000)]
    path = tmp_path / "q.bin"
    path.write_bytes(b"q" * (2 << 20))
    result = run_curl("--http2-prior-knowledge", "-T", str(path), quart_server.url + "/upload")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert json.loads(result.stdout) == {"size": 2 << 20, "sha256": digest}
