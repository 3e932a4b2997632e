"""HTTP/1.1 and HTTP/1.0 with real clients on a default listener: curl (no flag, --http1.0),
wget, requests, urllib.request, httpx in HTTP/1.1 mode and h2load --h1; chunked NDJSON, resume
with Range, Expect: 100-continue, HEAD, 304, 206/416, TLS with ALPN http/1.1, and the h2c
upgrade next to them."""

from __future__ import annotations

import hashlib
import json
import subprocess
import urllib.request
from pathlib import Path

import httpx
import pytest
import requests
from support.commands import require
from support.curl import run_curl
from support.files import sha256_file
from support.servers import ServerProcess


def curl_text(*args: str) -> tuple[str, str]:
    """curl's body and its ``code version`` line."""
    result = run_curl("-w", "\n%{http_code} %{http_version}", *args, max_time=30, text=True)
    assert result.returncode == 0, result.stderr
    body, _, status = result.stdout.rpartition("\n")
    return body, status


def test_curl_without_a_flag_speaks_http11(h2c_server: ServerProcess) -> None:
    body, status = curl_text(f"{h2c_server.url}/hello.txt")
    assert (body, status) == ("hello, h2stream\n", "200 1.1")


def test_curl_http10(h2c_server: ServerProcess) -> None:
    result = run_curl("--http1.0", "-i", f"{h2c_server.url}/hello.txt", max_time=30)
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK")
    assert b"connection: close" in head  # 1.0 without keep-alive: the connection ends
    assert body == b"hello, h2stream\n"


def test_curl_keeps_the_connection_alive(h2c_server: ServerProcess) -> None:
    url = f"{h2c_server.url}/hello.txt"
    result = run_curl("-v", url, url, url, max_time=30, text=True)
    assert result.stdout == "hello, h2stream\n" * 3
    assert result.stderr.count("Re-using existing connection") == 2


def test_curl_http2_upgrade_still_works(h2c_server: ServerProcess) -> None:
    body, status = curl_text("--http2", f"{h2c_server.url}/hello.txt")
    assert (body, status) == ("hello, h2stream\n", "200 2")


def test_curl_upload_with_100_continue(h2c_server: ServerProcess, files_root: Path) -> None:
    result = run_curl(
        "-v",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        f"@{files_root / 'mib.bin'}",
        f"{h2c_server.url}/_h2stream/sink",
        max_time=30,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "HTTP/1.1 100 Continue" in result.stderr
    assert json.loads(result.stdout)["bytes"] == 1 << 20


def test_curl_chunked_upload(h2c_server: ServerProcess, files_root: Path) -> None:
    body, status = curl_text(
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        f"@{files_root / 'mib.bin'}",
        f"{h2c_server.url}/_h2stream/sink",
    )
    assert status == "200 1.1"
    assert json.loads(body)["bytes"] == 1 << 20


def test_wget(h2c_server: ServerProcess, tmp_path: Path, digests: dict[str, str]) -> None:
    wget = require("wget")
    target = tmp_path / "mib.bin"
    subprocess.run(
        [wget, "-q", "-O", str(target), f"{h2c_server.url}/mib.bin"], check=True, timeout=60
    )
    assert sha256_file(target) == digests["mib.bin"]


def test_requests_session_reuses_one_connection(
    h2c_server: ServerProcess, digests: dict[str, str]
) -> None:
    with requests.Session() as session:
        for name in ("kib.bin", "mib.bin", "empty.bin", "f16385.bin"):
            response = session.get(f"{h2c_server.url}/{name}", timeout=30)
            assert response.status_code == 200
            assert response.raw.version == 11
            assert hashlib.sha256(response.content).hexdigest() == digests[name]
        head = session.head(f"{h2c_server.url}/mib.bin", timeout=30)
        assert head.headers["content-length"] == str(1 << 20)
        assert head.content == b""


def test_requests_iter_lines_on_chunked_ndjson(h2c_server: ServerProcess) -> None:
    rows = 20000
    with requests.get(
        f"{h2c_server.url}/_h2stream/ndjson?rows={rows}", stream=True, timeout=30
    ) as response:
        assert response.headers.get("transfer-encoding") == "chunked"
        ids = [json.loads(line)["id"] for line in response.iter_lines() if line]
    assert ids == list(range(1, rows + 1))


def test_requests_resumes_a_cut_download(
    h2c_server: ServerProcess, digests: dict[str, str]
) -> None:
    url = f"{h2c_server.url}/f100m.bin"
    got = bytearray()
    with requests.get(url, stream=True, timeout=30) as response:
        for chunk in response.iter_content(1 << 16):
            got += chunk
            if len(got) >= 3 << 20:
                break  # the connection is dropped with the rest unread
    resumed = requests.get(url, headers={"range": f"bytes={len(got)}-"}, timeout=60)
    assert resumed.status_code == 206
    assert resumed.headers["content-range"] == f"bytes {len(got)}-{(100 << 20) - 1}/{100 << 20}"
    assert hashlib.sha256(bytes(got) + resumed.content).hexdigest() == digests["f100m.bin"]


def test_conditional_and_range_answers(h2c_server: ServerProcess) -> None:
    url = f"{h2c_server.url}/hello.txt"
    with requests.Session() as session:
        etag = session.get(url, timeout=10).headers["etag"]
        not_modified = session.get(url, headers={"if-none-match": etag}, timeout=10)
        assert not_modified.status_code == 304
        assert not_modified.content == b""
        part = session.get(url, headers={"range": "bytes=0-4"}, timeout=10)
        assert (part.status_code, part.content) == (206, b"hello")
        beyond = session.get(url, headers={"range": "bytes=999-"}, timeout=10)
        assert beyond.status_code == 416
        assert session.get(url, timeout=10).content == b"hello, h2stream\n"


def test_urllib_request(h2c_server: ServerProcess, digests: dict[str, str]) -> None:
    with urllib.request.urlopen(f"{h2c_server.url}/mib.bin", timeout=30) as response:
        assert response.version == 11
        assert hashlib.sha256(response.read()).hexdigest() == digests["mib.bin"]
    head = urllib.request.Request(f"{h2c_server.url}/hello.txt", method="HEAD")
    with urllib.request.urlopen(head, timeout=30) as response:
        assert response.headers["content-length"] == "16"
        assert response.read() == b""


def test_httpx_http1(h2c_server: ServerProcess, digests: dict[str, str]) -> None:
    with httpx.Client(http1=True, http2=False, timeout=30) as client:
        response = client.get(f"{h2c_server.url}/mib.bin")
        assert response.http_version == "HTTP/1.1"
        assert hashlib.sha256(response.content).hexdigest() == digests["mib.bin"]
        upload = client.post(f"{h2c_server.url}/_h2stream/sink", content=b"x" * 300000)
        assert upload.json()["bytes"] == 300000


def test_httpx_http1_over_tls(tls_server: ServerProcess) -> None:
    with httpx.Client(http1=True, http2=False, verify=False, timeout=30) as client:
        response = client.get(f"{tls_server.url}/hello.txt")
        assert response.http_version == "HTTP/1.1"
        assert response.text == "hello, h2stream\n"


def test_curl_tls_chooses_by_alpn(tls_server: ServerProcess) -> None:
    assert curl_text("-k", "--http1.1", f"{tls_server.url}/hello.txt")[1] == "200 1.1"
    assert curl_text("-k", f"{tls_server.url}/hello.txt")[1] == "200 2"


@pytest.mark.parametrize("pipelined", [1, 8])
def test_h2load_h1(h2c_server: ServerProcess, pipelined: int) -> None:
    result = subprocess.run(
        [require("h2load"), "--h1", "-n", "2000", "-c", "4", "-m", str(pipelined),
         f"{h2c_server.url}/kib.bin"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "2000 succeeded, 0 failed, 0 errored, 0 timeout" in result.stdout, result.stdout
    assert "2000 2xx" in result.stdout
