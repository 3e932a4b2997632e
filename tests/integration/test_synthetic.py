"""The built-in endpoints under /_h2stream/: bytes/N, sink, ndjson, and their off switch.

``bytes/N`` bodies are compared byte for byte with the documented pattern over h2c
(zero-copy from the memfd), ``--no-sendfile`` and TLS (copy path). The sink is driven by curl
and h2load ``-d``. The NDJSON table is checked row by row, and its resume contract
(``range: bytes=a-`` with ``if-range``, and ``after=K``) at offsets on every side of the row
width changes; a range at the end of a 10^11-row table must come back at once, which it can
only do if the generator seeks instead of regenerating from row 1.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h2.errors
import pytest
import zstandard
from support.clients import UploadClient
from support.curl import curl_headers
from support.h2load import h2load
from support.servers import ServerProcess

from h2stream.handlers.synthetic import PATTERN_SIZE, pattern_bytes, row_offset

NO_ERROR = int(h2.errors.ErrorCodes.NO_ERROR)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("synthroot"), "--max-request-body", "1M")
    yield process
    process.stop()


# --------------------------------------------------------------------------- bytes/N

SIZES = [0, 1, 16383, 16384, 16385, PATTERN_SIZE, PATTERN_SIZE + 300_000, 3 * PATTERN_SIZE + 7]


@pytest.mark.parametrize("size", SIZES)
def test_bytes_h2c_zero_copy(server: ServerProcess, size: int) -> None:
    body, headers = curl_headers(f"{server.url}/_h2stream/bytes/{size}")
    assert headers[":status"] == "200"
    assert headers["content-length"] == str(size)
    assert headers["content-type"] == "application/octet-stream"
    assert body == pattern_bytes(0, size)


@pytest.mark.parametrize("variant", ["--no-sendfile", "--self-signed"])
def test_bytes_copy_paths(server_factory: Any, variant: str) -> None:
    process: ServerProcess = server_factory(variant)
    size = 3 * PATTERN_SIZE + 12345
    extra = ["-k", "--http2"] if variant == "--self-signed" else []
    body, headers = curl_headers(*extra, f"{process.url}/_h2stream/bytes/{size}")
    assert headers[":status"] == "200" and body == pattern_bytes(0, size)


def test_bytes_sizes_ranges_and_errors(server: ServerProcess) -> None:
    base = f"{server.url}/_h2stream/bytes"
    _, headers = curl_headers("-I", f"{base}/10G")
    assert headers["content-length"] == str(10 << 30)
    _, headers = curl_headers("-I", f"{base}/2T")
    assert headers["content-length"] == str(2 << 40)
    body, headers = curl_headers("-r", "1048570-1048585", f"{base}/4M")
    assert headers[":status"] == "206"
    assert headers["content-range"] == f"bytes 1048570-1048585/{4 << 20}"
    assert body == pattern_bytes(1048570, 16)
    body, headers = curl_headers("-H", "range: bytes=-10", f"{base}/5000")
    assert body == pattern_bytes(4990, 10)
    _, headers = curl_headers("-H", "range: bytes=5000-", f"{base}/5000")
    assert headers[":status"] == "416" and headers["content-range"] == "bytes */5000"
    # A range resumes a transfer: the bytes after it are the same as in the whole body.
    body, headers = curl_headers("-H", "range: bytes=3000000-", f"{base}/3500000")
    assert body == pattern_bytes(3000000, 500000)
    for bad in ("abc", "2P", "-1", "1.5G"):
        _, headers = curl_headers(f"{base}/{bad}")
        assert headers[":status"] == "400", bad
    # No body: with one, the 405 comes before the body's DATA when they reach the server in two
    # reads, and the RST_STREAM(NO_ERROR) after it (RFC 9113 8.1) makes Debian 12's curl 7.88
    # exit 92 though the answer was whole (raw h2 tests cover that case).
    _, headers = curl_headers("-X", "POST", f"{base}/10")
    assert headers[":status"] == "405" and headers["allow"] == "GET, HEAD"
    _, headers = curl_headers(f"{server.url}/_h2stream/nothing")
    assert headers[":status"] == "404"


def test_bytes_with_h2load(server: ServerProcess) -> None:
    run = h2load(
        f"{server.url}/_h2stream/bytes/64K", "-n", "200", "-c", "2", "-m", "10", timeout=60
    )
    assert "200 succeeded" in run.output, run.output
    assert "status codes: 200 2xx" in run.output


# --------------------------------------------------------------------------- sink


def test_sink_counts_and_discards(server: ServerProcess, tmp_path: Path) -> None:
    upload = tmp_path / "up.bin"
    upload.write_bytes(os.urandom(900_000))
    body, headers = curl_headers("--data-binary", f"@{upload}", f"{server.url}/_h2stream/sink")
    assert headers[":status"] == "200" and headers["content-type"] == "application/json"
    answer = json.loads(body)
    assert answer["bytes"] == 900_000 and answer["seconds"] >= 0
    body, _ = curl_headers("-X", "POST", f"{server.url}/_h2stream/sink")
    assert json.loads(body)["bytes"] == 0
    body, headers = curl_headers("-T", str(upload), f"{server.url}/_h2stream/sink")  # PUT
    assert json.loads(body)["bytes"] == 900_000
    _, headers = curl_headers(f"{server.url}/_h2stream/sink")
    assert headers[":status"] == "405" and headers["allow"] == "POST, PUT"


def test_sink_with_h2load_upload(server: ServerProcess, tmp_path: Path) -> None:
    upload = tmp_path / "h2load.bin"
    upload.write_bytes(os.urandom(300_000))
    sink_url = f"{server.url}/_h2stream/sink"
    run = h2load(sink_url, "-n", "60", "-c", "2", "-m", "4", "-d", str(upload), timeout=60)
    assert "60 succeeded" in run.output, run.output
    assert "status codes: 60 2xx" in run.output


def test_sink_limit(server: ServerProcess) -> None:
    client = UploadClient(server.port)
    try:
        # Declared too large: 413 before reading, then RST_STREAM(NO_ERROR).
        stream_id = client.request(
            "/_h2stream/sink", "POST", [("content-length", str(2 << 20))], end_stream=False
        )
        response = client.responses[stream_id]
        assert client.until(lambda: response.ended)
        assert (response.status, response.reset_code) == (413, NO_ERROR)
        # Undeclared, crossing the limit (1 MiB here) while arriving.
        stream_id = client.request("/_h2stream/sink", "POST", end_stream=False)
        sent = client.upload(stream_id, os.urandom(3 << 20))
        response = client.responses[stream_id]
        assert client.until(lambda: response.ended)
        assert (response.status, response.reset_code) == (413, NO_ERROR)
        assert sent < (1 << 20) + (1 << 17)
        # The connection carries on with a body that fits.
        stream_id = client.request("/_h2stream/sink", "POST", end_stream=False)
        client.upload(stream_id, b"z" * 700_000)
        response = client.responses[stream_id]
        assert client.until(lambda: response.ended)
        assert json.loads(bytes(response.body))["bytes"] == 700_000
    finally:
        client.close()


# --------------------------------------------------------------------------- ndjson


def _table(server: ServerProcess, rows: int) -> bytes:
    body, headers = curl_headers(f"{server.url}/_h2stream/ndjson?rows={rows}")
    assert headers["content-length"] == str(len(body)) == str(row_offset(rows + 1))
    return body


def test_ndjson_rows(server: ServerProcess) -> None:
    body = _table(server, 25_000)
    rows = [json.loads(line) for line in body.splitlines()]
    assert [row["id"] for row in rows] == list(range(1, 25_001))
    assert set(rows[0]) == {"id", "name", "email", "city", "score", "status", "token", "ts"}
    assert rows[12344]["email"] == "user-12345@example.com"
    assert _table(server, 25_000) == body  # deterministic
    # The first rows of a longer table are the same rows.
    assert _table(server, 30_000).startswith(body)
    body, headers = curl_headers(f"{server.url}/_h2stream/ndjson")
    assert len(body.splitlines()) == 1000 and headers["content-type"] == "application/x-ndjson"
    body, headers = curl_headers(f"{server.url}/_h2stream/ndjson?rows=0")
    assert body == b"" and headers["content-length"] == "0"
    _, headers = curl_headers("-I", f"{server.url}/_h2stream/ndjson?rows=1000000")
    assert headers["content-length"] == str(row_offset(1_000_001))
    for bad in ("rows=-1", "rows=x", "rows=1000000000000", "after=y"):
        _, headers = curl_headers(f"{server.url}/_h2stream/ndjson?{bad}")
        assert headers[":status"] == "400", bad


@pytest.mark.parametrize("ident", [1, 9, 10, 99, 100, 999, 1000, 1001, 9999, 10_000, 12_345])
def test_ndjson_resume_by_range(server: ServerProcess, ident: int) -> None:
    full = _table(server, 20_000)
    _, first = curl_headers("-I", f"{server.url}/_h2stream/ndjson?rows=20000")
    etag = first["etag"]
    # From the start of a row, from inside it, and from just before it.
    for offset in (row_offset(ident), row_offset(ident) + 7, max(0, row_offset(ident) - 1)):
        body, headers = curl_headers(
            "-H",
            f"range: bytes={offset}-",
            "-H",
            f"if-range: {etag}",
            f"{server.url}/_h2stream/ndjson?rows=20000",
        )
        assert headers[":status"] == "206"
        assert headers["content-range"] == f"bytes {offset}-{len(full) - 1}/{len(full)}"
        assert body == full[offset:]


def test_ndjson_range_forms_and_if_range(server: ServerProcess) -> None:
    full = _table(server, 3000)
    url = f"{server.url}/_h2stream/ndjson?rows=3000"
    body, headers = curl_headers("-r", "100-199", url)
    assert headers[":status"] == "206" and body == full[100:200]
    body, headers = curl_headers("-H", "range: bytes=-50", url)
    assert body == full[-50:]
    body, headers = curl_headers("-H", f"range: bytes={len(full)}-", url)
    assert headers[":status"] == "416"
    # A stale validator: the whole table, not a piece of a different one.
    body, headers = curl_headers("-H", "range: bytes=100-", "-H", 'if-range: "other"', url)
    assert headers[":status"] == "200" and body == full


def test_ndjson_resume_after_rows(server: ServerProcess) -> None:
    full = _table(server, 5000)
    body, _ = curl_headers(f"{server.url}/_h2stream/ndjson?rows=5000&after=1234")
    assert body == full[row_offset(1235) :]
    # The checkpoint also works compressed, where byte offsets would not.
    raw, headers = curl_headers(
        "-H", "accept-encoding: zstd", f"{server.url}/_h2stream/ndjson?rows=5000&after=1234"
    )
    assert headers["content-encoding"] == "zstd"

    assert zstandard.ZstdDecompressor().decompressobj().decompress(raw) == full[row_offset(1235) :]
    body, _ = curl_headers(f"{server.url}/_h2stream/ndjson?rows=5000&after=9999")
    assert body == b""


def test_ndjson_seeks_instead_of_regenerating(server: ServerProcess) -> None:
    rows = 10**11
    size = row_offset(rows + 1)
    url = f"{server.url}/_h2stream/ndjson?rows={rows}"
    _, headers = curl_headers("-I", url)
    assert headers["content-length"] == str(size)  # about 17 TB
    # 17 TB from row 1 would take days; the seek answers within the command's deadline.
    body, headers = curl_headers("-H", f"range: bytes={size - 1000}-", url, timeout=30)
    assert headers[":status"] == "206" and len(body) == 1000
    last = body.splitlines()[-1]
    assert json.loads(last)["id"] == rows
    body, _ = curl_headers(
        f"{server.url}/_h2stream/ndjson?rows={rows}&after={rows - 2}", timeout=30
    )
    assert [json.loads(line)["id"] for line in body.splitlines()] == [rows - 1, rows]


# --------------------------------------------------------------------------- the switch


def test_builtin_endpoints_can_be_switched_off(server_factory: Any) -> None:
    process: ServerProcess = server_factory("--no-builtin-endpoints")
    for path in ("/_h2stream/bytes/10", "/_h2stream/ndjson"):
        _, headers = curl_headers(f"{process.url}{path}")
        assert headers[":status"] == "404"
    _, headers = curl_headers("-X", "POST", f"{process.url}/_h2stream/sink")
    assert headers[":status"] == "405"  # the directory answers: GET and HEAD only
    # Files are still served.
    body, _ = curl_headers(f"{process.url}/one.bin")
    assert len(body) == 1


def test_default_server_has_no_tasks_for_builtins(server: ServerProcess) -> None:
    # Plain counter check: the endpoints answer many concurrent streams on one connection.
    url = f"{server.url}/_h2stream/ndjson?rows=20"
    run = h2load(url, "-n", "500", "-c", "1", "-m", "50", timeout=60)
    assert re.search(r"500 succeeded", run.output), run.output
