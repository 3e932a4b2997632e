"""Compression end to end: negotiation, exact round trips, precompressed siblings, memory.

Bodies fetched raw with ``accept-encoding`` set must decompress (``zstandard``, ``gzip``) to
exactly the identity body, and ``curl --compressed`` must write exactly the identity body; this
holds for files compressed on the fly, the generated NDJSON endpoint and an application's
streamed CSV. q-values decide, ``q=0`` refusals are honoured (406 when nothing is left), ranges
get identity, precompressed siblings go out zero-copy. A 1 GiB generated zstd stream keeps
the server's RSS flat: compression is fed only as the window opens.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h2.settings
import pytest
import zstandard
from support.clients import RawH2Client, UploadClient
from support.curl import curl_command, curl_headers
from support.servers import AppServer, ServerProcess

from h2stream.core.stats import STATS
from h2stream.handlers.synthetic import row_offset

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"


def _text(n: int) -> bytes:
    return b"".join(b"line %d: the quick brown fox jumps over the lazy dog\n" % i for i in range(n))


@pytest.fixture(scope="module")
def text_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("textroot")
    (root / "page.html").write_bytes(b"<!doctype html>\n" + _text(4000))
    (root / "data.json").write_text(
        json.dumps([{"i": i, "v": "x" * (i % 50)} for i in range(9000)])
    )
    (root / "small.txt").write_bytes(b"tiny\n")
    (root / "image.bin").write_bytes(os.urandom(200_000))
    script = b"".join(b"function f%d(x) { return x * %d; }\n" % (i, i * 7919) for i in range(20000))
    (root / "app.js").write_bytes(script)
    (root / "app.js.zst").write_bytes(zstandard.ZstdCompressor(level=19).compress(script))
    (root / "app.js.gz").write_bytes(gzip.compress(script, 9))
    styles = b".a { color: red; }\n" * 5000
    (root / "stale.css").write_bytes(styles)
    (root / "stale.css.zst").write_bytes(zstandard.ZstdCompressor().compress(b"old contents"))
    old = time.time() - 3600
    os.utime(root / "stale.css.zst", (old, old))
    return root


@pytest.fixture(scope="module")
def server(text_root: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(text_root, "--app", "examples.export_app:app")
    yield process
    process.stop()


def decode(coding: str, data: bytes) -> bytes:
    if coding == "zstd":
        assert data.startswith(ZSTD_MAGIC)
        # One frame or several (a stream that yielded its context, compressors.py).
        return bytes(
            zstandard.ZstdDecompressor().decompressobj(read_across_frames=True).decompress(data)
        )
    assert data.startswith(GZIP_MAGIC)
    return gzip.decompress(data)


BODIES = [
    "/page.html",
    "/data.json",
    "/_h2stream/ndjson?rows=20000",
    "/export.csv?rows=20000",
    "/export.ndjson?rows=5000",
]


@pytest.mark.parametrize("path", BODIES)
@pytest.mark.parametrize("coding", ["zstd", "gzip"])
def test_round_trip(server: ServerProcess, path: str, coding: str) -> None:
    identity, plain = curl_headers(f"{server.url}{path}")
    assert plain.get("content-encoding") is None and plain["vary"] == "accept-encoding"
    raw, headers = curl_headers("-H", f"accept-encoding: {coding}", f"{server.url}{path}")
    assert headers[":status"] == "200"
    assert headers["content-encoding"] == coding
    assert headers["vary"] == "accept-encoding"
    assert "content-length" not in headers
    assert len(raw) < len(identity)
    assert decode(coding, raw) == identity


@pytest.mark.parametrize("path", BODIES)
def test_curl_compressed(server: ServerProcess, path: str) -> None:
    identity, _ = curl_headers(f"{server.url}{path}")
    decoded, headers = curl_headers("--compressed", f"{server.url}{path}")
    assert headers["content-encoding"] == "zstd"  # curl offers zstd; we prefer it
    assert decoded == identity


@pytest.mark.parametrize(
    ("accept", "status", "coding"),
    [
        ("zstd;q=0, gzip", 200, "gzip"),
        ("gzip;q=0.5, zstd;q=0.4", 200, "gzip"),
        ("gzip;q=0", 200, None),
        ("zstd;q=0, gzip;q=0", 200, None),
        ("gzip;q=0.5, identity", 200, None),
        ("identity;q=0", 406, None),
        ("*;q=0", 406, None),
        ("*;q=0, identity", 200, None),
        ("identity;q=0, zstd;q=0.1", 200, "zstd"),
        ("*", 200, "zstd"),
        ("x-gzip", 200, "gzip"),
        ("", 200, None),
    ],
)
def test_q_values(server: ServerProcess, accept: str, status: int, coding: str | None) -> None:
    client = UploadClient(server.port)
    try:
        stream_id = client.request("/page.html", extra=[("accept-encoding", accept)])
        response = client.responses[stream_id]
        assert client.until(lambda: response.ended, timeout=30)
    finally:
        client.close()
    assert response.status == status
    assert response.headers.get(b"content-encoding") == (coding.encode() if coding else None)
    assert response.headers[b"vary"] == b"accept-encoding"
    if coding is not None:
        identity, _ = curl_headers(f"{server.url}/page.html")
        assert decode(coding, bytes(response.body)) == identity


def test_refusing_identity_on_the_generated_stream_is_406(server: ServerProcess) -> None:
    _, headers = curl_headers(
        "-H", "accept-encoding: identity;q=0", f"{server.url}/_h2stream/ndjson"
    )
    assert headers[":status"] == "406"
    _, headers = curl_headers("-H", "accept-encoding: identity;q=0", f"{server.url}/export.csv")
    assert headers[":status"] == "406"


def test_incompressible_and_small_bodies_are_identity(server: ServerProcess) -> None:
    body, headers = curl_headers("-H", "accept-encoding: zstd, gzip", f"{server.url}/image.bin")
    assert "content-encoding" not in headers and "vary" not in headers
    assert len(body) == 200_000
    # identity;q=0 is disregarded for types we never encode (RFC 9110 §12.1 allows it).
    body, headers = curl_headers("-H", "accept-encoding: identity;q=0", f"{server.url}/image.bin")
    assert headers[":status"] == "200" and len(body) == 200_000
    body, headers = curl_headers("-H", "accept-encoding: zstd", f"{server.url}/small.txt")
    assert body == b"tiny\n" and headers["vary"] == "accept-encoding"
    assert "content-encoding" not in headers
    body, headers = curl_headers(
        "-H", "accept-encoding: zstd", f"{server.url}/_h2stream/bytes/100000"
    )
    assert "content-encoding" not in headers and len(body) == 100_000


def test_range_requests_get_identity(server: ServerProcess, text_root: Path) -> None:
    page = (text_root / "page.html").read_bytes()
    body, headers = curl_headers(
        "-H", "accept-encoding: zstd", "-H", "range: bytes=100-", f"{server.url}/page.html"
    )
    assert headers[":status"] == "206" and body == page[100:]
    assert "content-encoding" not in headers
    app_js = (text_root / "app.js").read_bytes()
    body, headers = curl_headers("-H", "accept-encoding: zstd", "-r", "5-9", f"{server.url}/app.js")
    assert headers[":status"] == "206" and body == app_js[5:10]


def test_precompressed_siblings(server: ServerProcess, text_root: Path) -> None:
    identity, plain = curl_headers(f"{server.url}/app.js")
    for coding, suffix in (("zstd", ".zst"), ("gzip", ".gz")):
        sibling = (text_root / f"app.js{suffix}").read_bytes()
        body, headers = curl_headers("-H", f"accept-encoding: {coding}", f"{server.url}/app.js")
        assert body == sibling
        assert headers["content-encoding"] == coding
        assert headers["content-type"] == plain["content-type"] == "text/javascript; charset=utf-8"
        assert headers["content-length"] == str(len(sibling))
        assert headers["etag"] != plain["etag"]
        assert headers["vary"] == "accept-encoding"
        assert decode(coding, body) == identity
        # Its own etag revalidates it.
        _, again = curl_headers(
            "-H",
            f"accept-encoding: {coding}",
            "-H",
            f"if-none-match: {headers['etag']}",
            f"{server.url}/app.js",
        )
        assert again[":status"] == "304"
    # With both accepted, the preferred coding's sibling.
    body, headers = curl_headers("-H", "accept-encoding: gzip, zstd", f"{server.url}/app.js")
    assert headers["content-encoding"] == "zstd"


def test_stale_sibling_is_ignored(server: ServerProcess, text_root: Path) -> None:
    body, headers = curl_headers("-H", "accept-encoding: zstd", f"{server.url}/stale.css")
    assert headers["content-encoding"] == "zstd"
    assert decode("zstd", body) == (text_root / "stale.css").read_bytes()


def test_compressed_variant_has_its_own_etag(server: ServerProcess) -> None:
    _, plain = curl_headers(f"{server.url}/page.html")
    _, zstd = curl_headers("-H", "accept-encoding: zstd", f"{server.url}/page.html")
    assert zstd["etag"] != plain["etag"]
    _, again = curl_headers(
        "-H",
        "accept-encoding: zstd",
        "-H",
        f"if-none-match: {zstd['etag']}",
        f"{server.url}/page.html",
    )
    assert again[":status"] == "304" and again["vary"] == "accept-encoding"
    # The identity etag does not validate the compressed variant.
    _, other = curl_headers(
        "-H",
        "accept-encoding: zstd",
        "-H",
        f"if-none-match: {plain['etag']}",
        f"{server.url}/page.html",
    )
    assert other[":status"] == "200"


def test_siblings_are_zero_copy_and_counted(text_root: Path) -> None:
    # Zero-copy for 16 KiB frames too (by default they go by the copy path).
    server = AppServer(text_root, None, zero_copy_min_frame=0)
    try:
        sibling = (text_root / "app.js.gz").read_bytes()
        assert len(sibling) > 2 * 16384
        before = STATS.snapshot()
        client = UploadClient(server.port)
        try:
            stream_id = client.request("/app.js", extra=[("accept-encoding", "gzip")])
            response = client.responses[stream_id]
            assert client.until(lambda: response.ended)
            assert bytes(response.body) == sibling
            stream_id = client.request("/page.html", extra=[("accept-encoding", "zstd")])
            response = client.responses[stream_id]
            assert client.until(lambda: response.ended)
            compressed = len(response.body)
        finally:
            client.close()
        after = STATS.snapshot()
        assert after["precompressed_responses"] == before["precompressed_responses"] + 1
        # Every frame but the last (which carries END_STREAM) left by sendfile.
        assert after["body_bytes_sendfile"] - before["body_bytes_sendfile"] >= len(sibling) - 16384
        assert after["body_bytes_zstd"] - before["body_bytes_zstd"] == compressed
    finally:
        server.stop()


def test_gzip_counted(text_root: Path) -> None:
    app = AppServer(text_root, None)
    try:
        before = STATS.body_bytes_gzip
        body, headers = curl_headers("-H", "accept-encoding: gzip", f"{app.url}/page.html")
        assert headers["content-encoding"] == "gzip"
        assert STATS.body_bytes_gzip - before == len(body)
    finally:
        app.stop()


def test_one_gib_zstd_stream_keeps_memory_flat(server_factory: Any) -> None:
    """1 GiB of NDJSON, compressed as it is sent, to a client that decodes and discards it."""
    process: ServerProcess = server_factory()
    rows = 6_400_000
    identity_size = row_offset(rows + 1)
    assert identity_size >= 1 << 30
    url = f"{process.url}/_h2stream/ndjson?rows={rows}"
    # Warm up: the row templates and a zstd context exist from here on.
    curl_headers("-H", "accept-encoding: zstd", f"{process.url}/_h2stream/ndjson?rows=1000")
    baseline = process.rss()
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(process.rss())
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    # Bounded by the watchdog below, not by curl.
    command = curl_command("--http2-prior-knowledge", "-H", "accept-encoding: zstd", max_time=None)
    proc = subprocess.Popen([*command, url], stdout=subprocess.PIPE)
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    try:
        assert proc.stdout is not None
        reader = zstandard.ZstdDecompressor().stream_reader(proc.stdout)
        decoded = 0
        tail = b""
        while chunk := reader.read(1 << 20):
            decoded += len(chunk)
            tail = (tail + chunk)[-400:]
        assert proc.wait(30) == 0
    finally:
        watchdog.cancel()
        stop.set()
        sampler.join(5)
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert decoded == identity_size
    assert json.loads(tail.splitlines()[-1])["id"] == rows
    assert len(samples) >= 5
    # Flat: a few MiB of allocator noise at most, never a body's worth.
    assert max(samples) - baseline < 16 << 20, (baseline, max(samples))


def test_a_stalled_zstd_stream_yields_its_context(text_root: Path) -> None:
    """One zstd context per worker: a client that stops reading holds it only until another
    stream waits; that one is served, and the stalled body, read later, is still exact
    (several zstd frames now)."""
    app = AppServer(text_root, None, max_zstd_contexts=1)
    stalled = RawH2Client(
        app.port, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 4096}, auto_ack=False
    )
    try:
        events = STATS.limit_events
        waits, yields = events.get("zstd_contexts", 0), events.get("zstd_context_yields", 0)
        path = "/_h2stream/ndjson?rows=100000"
        sid = stalled.request(path, extra=[("accept-encoding", "zstd")])
        response = stalled.responses[sid]
        assert stalled.until(lambda: len(response.body) >= 4096, timeout=10)
        assert not response.ended  # parked on its window, holding the one context
        started = time.monotonic()
        other, headers = curl_headers("--compressed", f"{app.url}/_h2stream/ndjson?rows=20000")
        assert headers["content-encoding"] == "zstd"
        assert other == curl_headers(f"{app.url}/_h2stream/ndjson?rows=20000")[0]
        assert time.monotonic() - started < 5  # one reclaim check (0.25 s), not a timeout
        assert events["zstd_contexts"] > waits and events["zstd_context_yields"] > yields
        stalled.auto_ack = True
        stalled.open_window(sid, 1 << 30)
        stalled.open_window(None, 1 << 30)
        assert stalled.until(lambda: response.ended, timeout=30)
        assert response.status == 200 and response.reset_code is None
        body = bytes(response.body)
        first_frame = zstandard.ZstdDecompressor().decompressobj().decompress(body)
        identity = curl_headers(f"{app.url}{path}")[0]
        assert len(first_frame) < len(identity)  # it did yield mid-body
        assert decode("zstd", body) == identity
    finally:
        stalled.close()
        app.stop()
