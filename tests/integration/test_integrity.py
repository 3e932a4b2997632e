"""Every body arrives intact, whichever real client fetches it, over every way in.

curl (prior knowledge, ``Upgrade: h2c`` and TLS), nghttp and httpx fetch the frame-boundary
sizes (0, 1, 16383, 16384, 16385 bytes), 1 MiB and 256 MiB; each body is streamed into sha256
and compared with the file's. The 256 MiB file is fetched once per client kind.
Also: HEAD, the response headers a file download needs, directory index and encoded names.
"""

from __future__ import annotations

import hashlib
import subprocess
import threading
from pathlib import Path

import httpx
import pytest
from support.clients import request
from support.commands import require
from support.curl import curl_fetch, run_curl
from support.downloads import Fetched, stream_command
from support.files import SIZES
from support.servers import ServerProcess

INTEGRITY_FILES = [
    "empty.bin",
    "one.bin",
    "f16383.bin",
    "f16384.bin",
    "f16385.bin",
    "mib.bin",
    "f256m.bin",
]
CHUNK = 1 << 20
# Generous: a 256 MiB body over loopback takes seconds even through Python clients.
FETCH_TIMEOUT = 90.0
# Small bodies arrive in milliseconds; a stuck one fails after this instead of FETCH_TIMEOUT.
SMALL_TIMEOUT = 15.0
# httpx applies its timeout to each network operation, not to the whole body.
READ_TIMEOUT = 10.0


def _max_time(name: str) -> float:
    return FETCH_TIMEOUT if name == "f256m.bin" else SMALL_TIMEOUT


def _check(fetched: Fetched, name: str, digests: dict[str, str]) -> None:
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.size == SIZES[name]
    assert fetched.sha256 == digests[name]


# --------------------------------------------------------------------------- curl


@pytest.mark.parametrize("name", INTEGRITY_FILES)
def test_curl_prior_knowledge(
    h2c_server: ServerProcess, digests: dict[str, str], name: str
) -> None:
    url = f"{h2c_server.url}/{name}"
    fetched, code, version = curl_fetch(url, "--http2-prior-knowledge", max_time=_max_time(name))
    assert (code, version) == ("200", "2")
    _check(fetched, name, digests)


@pytest.mark.parametrize("name", INTEGRITY_FILES)
def test_curl_upgrade_h2c(h2c_server: ServerProcess, digests: dict[str, str], name: str) -> None:
    # --http2 on http:// sends "Upgrade: h2c"; the answer must really come back over HTTP/2.
    url = f"{h2c_server.url}/{name}"
    fetched, code, version = curl_fetch(url, "--http2", max_time=_max_time(name))
    assert (code, version) == ("200", "2")
    _check(fetched, name, digests)


@pytest.mark.parametrize("name", INTEGRITY_FILES)
def test_curl_tls(tls_server: ServerProcess, digests: dict[str, str], name: str) -> None:
    url = f"{tls_server.url}/{name}"
    fetched, code, version = curl_fetch(url, "-k", "--http2", max_time=_max_time(name))
    assert (code, version) == ("200", "2")
    _check(fetched, name, digests)


# --------------------------------------------------------------------------- nghttp


@pytest.mark.parametrize("name", INTEGRITY_FILES)
def test_nghttp(h2c_server: ServerProcess, digests: dict[str, str], name: str) -> None:
    nghttp = require("nghttp")
    # nghttp writes the response body to stdout; it exits non-zero when the request failed.
    fetched = stream_command([nghttp, f"{h2c_server.url}/{name}"])
    _check(fetched, name, digests)


def test_nghttp_status_and_upgrade(h2c_server: ServerProcess, digests: dict[str, str]) -> None:
    """nghttp's own view of the exchange: status 200 over prior knowledge and over Upgrade."""
    nghttp = require("nghttp")
    for extra in ([], ["-u"]):
        result = subprocess.run(
            [nghttp, "-v", "-n", *extra, f"{h2c_server.url}/mib.bin"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert ":status: 200" in result.stdout
        assert "content-length: 1048576" in result.stdout
        assert "END_STREAM" in result.stdout
    fetched = stream_command([nghttp, "-u", f"{h2c_server.url}/f16385.bin"])
    _check(fetched, "f16385.bin", digests)


# --------------------------------------------------------------------------- httpx


def _httpx_fetch(client: httpx.Client, url: str) -> tuple[int, str, str, int]:
    digest = hashlib.sha256()
    size = 0
    with client.stream("GET", url) as response:
        for chunk in response.iter_raw(CHUNK):
            digest.update(chunk)
            size += len(chunk)
        return response.status_code, response.http_version, digest.hexdigest(), size


@pytest.fixture(scope="module")
def httpx_h2c() -> httpx.Client:
    # http1=False: HTTP/2 with prior knowledge on cleartext.
    with httpx.Client(http1=False, http2=True, timeout=READ_TIMEOUT) as client:
        yield client  # type: ignore[misc]


@pytest.fixture(scope="module")
def httpx_tls() -> httpx.Client:
    with httpx.Client(http2=True, verify=False, timeout=READ_TIMEOUT) as client:
        yield client  # type: ignore[misc]


@pytest.mark.parametrize("name", INTEGRITY_FILES)
def test_httpx_h2c(
    httpx_h2c: httpx.Client, h2c_server: ServerProcess, digests: dict[str, str], name: str
) -> None:
    status, version, sha, size = _httpx_fetch(httpx_h2c, f"{h2c_server.url}/{name}")
    assert (status, version) == (200, "HTTP/2")
    assert (size, sha) == (SIZES[name], digests[name])


@pytest.mark.parametrize("name", INTEGRITY_FILES)
def test_httpx_tls(
    httpx_tls: httpx.Client, tls_server: ServerProcess, digests: dict[str, str], name: str
) -> None:
    status, version, sha, size = _httpx_fetch(httpx_tls, f"{tls_server.url}/{name}")
    assert (status, version) == (200, "HTTP/2")
    assert (size, sha) == (SIZES[name], digests[name])


def test_httpx_many_streams_on_one_connection(
    httpx_h2c: httpx.Client, h2c_server: ServerProcess, digests: dict[str, str]
) -> None:
    """Interleaved streams on one connection: each body is its own, none mixed up."""
    names = ["f16383.bin", "f16385.bin", "mib.bin", "one.bin", "kib.bin", "empty.bin"] * 4
    results: dict[int, tuple[int, str, str, int]] = {}

    def fetch(index: int, name: str) -> None:
        results[index] = _httpx_fetch(httpx_h2c, f"{h2c_server.url}/{name}")

    threads = [threading.Thread(target=fetch, args=(i, n)) for i, n in enumerate(names)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == len(names)
    for index, name in enumerate(names):
        status, version, sha, size = results[index]
        assert (status, version, size, sha) == (200, "HTTP/2", SIZES[name], digests[name])


# --------------------------------------------------------------------------- headers, HEAD


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_head_has_headers_and_no_body(
    h2c_server: ServerProcess, tls_server: ServerProcess, tls: bool
) -> None:
    server = tls_server if tls else h2c_server
    got = request(server.port, "/mib.bin", "HEAD", tls=tls)
    headers = got.headers
    assert got.status == 200
    assert headers[b"content-length"] == str(SIZES["mib.bin"]).encode()
    assert got.body == b""
    # And the same exchange as curl sees it.
    options = ["-k", "--http2"] if tls else ["--http2-prior-knowledge"]
    result = run_curl("-I", *options, f"{server.url}/f16385.bin", text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("HTTP/2 200")
    assert "content-length: 16385" in result.stdout.lower()


def test_file_response_headers(h2c_server: ServerProcess, files_root: Path) -> None:
    got = request(h2c_server.port, "/hello.txt")
    headers = got.headers
    assert got.status == 200
    assert got.body == (files_root / "hello.txt").read_bytes()
    assert headers[b"content-length"] == str((files_root / "hello.txt").stat().st_size).encode()
    assert headers[b"content-type"].startswith(b"text/plain")
    etag = headers[b"etag"]
    assert etag.startswith(b'"') and etag.endswith(b'"'), "a strong etag is a quoted string"
    assert headers[b"accept-ranges"] == b"bytes"
    assert headers[b"last-modified"].endswith(b" GMT")
    assert headers[b"date"].endswith(b" GMT")
    assert headers[b"server"]
    # Extension decides the type: binary data is not text.
    binary = request(h2c_server.port, "/kib.bin").headers
    assert binary[b"content-type"] == b"application/octet-stream"
    html = request(h2c_server.port, "/docs/index.html").headers
    assert html[b"content-type"].startswith(b"text/html")
    # The same file answers with the same validators.
    again = request(h2c_server.port, "/hello.txt").headers
    assert again[b"etag"] == etag
    assert again[b"last-modified"] == headers[b"last-modified"]


@pytest.mark.parametrize("path", ["/docs/", "/docs"])
def test_directory_serves_its_index(h2c_server: ServerProcess, files_root: Path, path: str) -> None:
    got = request(h2c_server.port, path)
    assert got.status == 200
    assert got.body == (files_root / "docs" / "index.html").read_bytes()


def test_percent_encoded_name(h2c_server: ServerProcess, files_root: Path) -> None:
    expected = (files_root / "space name.txt").read_bytes()
    assert request(h2c_server.port, "/space%20name.txt").body == expected
    fetched, code, _ = curl_fetch(
        f"{h2c_server.url}/space%20name.txt",
        "--http2-prior-knowledge",
        max_time=_max_time("space name.txt"),
    )
    assert code == "200"
    assert fetched.sha256 == hashlib.sha256(expected).hexdigest()


def test_query_string_does_not_change_the_file(h2c_server: ServerProcess, files_root: Path) -> None:
    got = request(h2c_server.port, "/hello.txt?v=123")
    assert got.status == 200
    assert got.body == (files_root / "hello.txt").read_bytes()
