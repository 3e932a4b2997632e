"""File semantics over the wire: ranges, conditional requests, methods, missing files, traversal.

The raw h2 client sends ``:path`` and every header verbatim, so the server sees exactly the
attack or edge case written here; curl checks the same behaviour as a real download tool.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import h2.exceptions
import pytest
from support.clients import RawH2Client, request
from support.curl import run_curl
from support.files import SIZES
from support.servers import ServerProcess

MIB = SIZES["mib.bin"]


@pytest.fixture(scope="module")
def mib(files_root: Path) -> bytes:
    return (files_root / "mib.bin").read_bytes()


# --------------------------------------------------------------------------- ranges


@pytest.mark.parametrize(
    ("spec", "first", "last"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=-100", MIB - 100, MIB - 1),
        ("bytes=100-", 100, MIB - 1),
        ("bytes=1000-1000", 1000, 1000),
        ("bytes=1048000-9999999", 1048000, MIB - 1),  # last clamped to the end
        ("bytes=-99999999", 0, MIB - 1),  # a suffix longer than the file: all of it
        ("bytes=16380-32770", 16380, 32770),  # across DATA frame boundaries
    ],
)
def test_single_range(
    h2c_server: ServerProcess, mib: bytes, spec: str, first: int, last: int
) -> None:
    response = request(h2c_server.port, "/mib.bin", headers=[("range", spec)])
    assert response.status == 206
    assert response.headers[b"content-range"] == f"bytes {first}-{last}/{MIB}".encode()
    assert response.headers[b"content-length"] == str(last - first + 1).encode()
    assert response.reset_code is None
    assert bytes(response.body) == mib[first : last + 1]


@pytest.mark.parametrize("spec", ["bytes=1048576-", "bytes=5000000-6000000", "bytes=-0"])
def test_unsatisfiable_range_is_416(h2c_server: ServerProcess, spec: str) -> None:
    response = request(h2c_server.port, "/mib.bin", headers=[("range", spec)])
    assert response.status == 416
    assert response.headers[b"content-range"] == f"bytes */{MIB}".encode()
    assert int(response.headers.get(b"content-length", b"0")) == len(response.body)


def test_range_of_empty_file_is_416(h2c_server: ServerProcess) -> None:
    response = request(h2c_server.port, "/empty.bin", headers=[("range", "bytes=0-0")])
    assert response.status == 416
    assert response.headers[b"content-range"] == b"bytes */0"


def test_several_ranges_answered_whole_or_multipart(h2c_server: ServerProcess, mib: bytes) -> None:
    response = request(h2c_server.port, "/mib.bin", headers=[("range", "bytes=0-1,100-200")])
    assert response.status in (200, 206)
    if response.status == 200:
        assert bytes(response.body) == mib
    else:
        assert response.headers[b"content-type"].startswith(b"multipart/byteranges")


@pytest.mark.parametrize("bad", ["bytes=abc", "items=0-10", "bytes=10-5", "bytes 0-10"])
def test_invalid_range_is_ignored(h2c_server: ServerProcess, mib: bytes, bad: str) -> None:
    response = request(h2c_server.port, "/mib.bin", headers=[("range", bad)])
    assert response.status == 200
    assert bytes(response.body) == mib


def _validators(port: int, path: str) -> tuple[str, str]:
    response = request(port, path, "HEAD")
    assert response.status == 200
    return response.headers[b"etag"].decode(), response.headers[b"last-modified"].decode()


def test_if_range(h2c_server: ServerProcess, mib: bytes) -> None:
    etag, last_modified = _validators(h2c_server.port, "/mib.bin")
    port = h2c_server.port
    for validator in (etag, last_modified):
        fresh = request(
            port, "/mib.bin", headers=[("range", "bytes=0-99"), ("if-range", validator)]
        )
        assert fresh.status == 206
        assert bytes(fresh.body) == mib[:100]
    for stale in ('"not-the-etag"', "W/" + etag, "Mon, 01 Jan 2001 00:00:00 GMT"):
        whole = request(port, "/mib.bin", headers=[("range", "bytes=0-99"), ("if-range", stale)])
        assert whole.status == 200, stale
        assert whole.headers[b"content-length"] == str(MIB).encode()
        assert bytes(whole.body) == mib


def test_range_over_tls(tls_server: ServerProcess, mib: bytes) -> None:
    """The copy path (TLS) honours the offset as the zero-copy one does."""
    spec = "bytes=300000-"
    response = request(tls_server.port, "/mib.bin", headers=[("range", spec)], tls=True)
    assert response.status == 206
    assert bytes(response.body) == mib[300000:]


def test_curl_range_and_resume(h2c_server: ServerProcess, mib: bytes, tmp_path: Path) -> None:
    got = run_curl("--http2-prior-knowledge", "-r", "0-99", f"{h2c_server.url}/mib.bin")
    assert got.returncode == 0, got.stderr
    assert got.stdout == mib[:100]
    # A download cut at 500,000 bytes, resumed with "-C -": the joined file is the original.
    partial = tmp_path / "mib.part"
    partial.write_bytes(mib[:500000])
    resumed = run_curl(
        "--http2-prior-knowledge",
        "-C",
        "-",
        "-o",
        str(partial),
        "-w",
        "%{http_code}",
        f"{h2c_server.url}/mib.bin",
    )
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout == b"206"
    assert hashlib.sha256(partial.read_bytes()).digest() == hashlib.sha256(mib).digest()


# --------------------------------------------------------------------------- conditional


def test_if_none_match_gives_304(h2c_server: ServerProcess) -> None:
    etag, _ = _validators(h2c_server.port, "/hello.txt")
    for value in (etag, f'"other", {etag}', "W/" + etag, "*"):
        for method in ("GET", "HEAD"):
            response = request(h2c_server.port, "/hello.txt", method, [("if-none-match", value)])
            assert response.status == 304, (method, value)
            assert bytes(response.body) == b""
            assert response.headers[b"etag"].decode() == etag
    changed = request(h2c_server.port, "/hello.txt", headers=[("if-none-match", '"other"')])
    assert changed.status == 200
    assert bytes(changed.body) == b"hello, h2stream\n"


def test_if_modified_since_gives_304(h2c_server: ServerProcess) -> None:
    _, last_modified = _validators(h2c_server.port, "/hello.txt")
    same = request(h2c_server.port, "/hello.txt", headers=[("if-modified-since", last_modified)])
    assert same.status == 304
    assert bytes(same.body) == b""
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    modified = request(h2c_server.port, "/hello.txt", headers=[("if-modified-since", old)])
    assert modified.status == 200
    assert bytes(modified.body) == b"hello, h2stream\n"
    # If-None-Match takes precedence over If-Modified-Since (RFC 9110 section 13.2.2).
    both = request(
        h2c_server.port,
        "/hello.txt",
        headers=[("if-none-match", '"other"'), ("if-modified-since", last_modified)],
    )
    assert both.status == 200


def test_curl_conditional_get(h2c_server: ServerProcess) -> None:
    etag, last_modified = _validators(h2c_server.port, "/mib.bin")
    url = f"{h2c_server.url}/mib.bin"
    for header in (f"If-None-Match: {etag}", f"If-Modified-Since: {last_modified}"):
        got = run_curl("--http2-prior-knowledge", "-H", header, "-w", "%{http_code}", url)
        assert got.returncode == 0, got.stderr
        assert got.stdout == b"304"


# --------------------------------------------------------------------------- methods, 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_get_405_with_allow(h2c_server: ServerProcess, method: str) -> None:
    response = request(h2c_server.port, "/hello.txt", method)
    assert response.status == 405
    allowed = {m.strip() for m in response.headers[b"allow"].decode().split(",")}
    assert {"GET", "HEAD"} <= allowed
    assert method not in allowed
    assert b"hello, h2stream" not in response.body


def test_curl_delete_gets_405(h2c_server: ServerProcess) -> None:
    got = run_curl("--http2-prior-knowledge", "-X", "DELETE", "-i", f"{h2c_server.url}/hello.txt")
    assert got.returncode == 0, got.stderr
    head = got.stdout.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/2 405")
    assert b"\r\nallow: get, head" in head


def _upload(client: RawH2Client, path: str, body: bytes, timeout: float = 30.0) -> int:
    """POST ``body`` respecting the server's windows; return the stream id once all is sent,
    or once the server, its response complete, asked us to stop (RST_STREAM NO_ERROR, RFC
    9113 section 8.1)."""
    stream_id = client.request(
        path, "POST", extra=[("content-length", str(len(body)))], end_stream=False
    )
    response = client.responses[stream_id]
    sent = 0
    view = memoryview(body)
    rounds = 0
    while sent < len(body):
        rounds += 1
        assert rounds < 100000, "upload made no progress"
        if response.reset_code is not None:
            assert response.reset_code == 0, f"server reset the upload ({response.reset_code})"
            assert response.status, "reset with NO_ERROR before a complete response"
            return stream_id
        window = min(
            client.conn.local_flow_control_window(stream_id), client.conn.max_outbound_frame_size
        )
        if window <= 0:
            # Wait for the server to return credit (or to end the stream); without either the
            # upload would stall here.
            assert client.until(
                lambda: (
                    response.reset_code is not None
                    or client.conn.local_flow_control_window(stream_id) > 0
                ),
                timeout=timeout,
            ), f"no WINDOW_UPDATE after {sent} of {len(body)} bytes"
            continue
        # Everything the window allows, then one flush.
        while window > 0 and sent < len(body):
            n = min(window, len(body) - sent)
            client.conn.send_data(stream_id, view[sent : sent + n].tobytes(), sent + n == len(body))
            sent += n
            window = min(
                client.conn.local_flow_control_window(stream_id),
                client.conn.max_outbound_frame_size,
            )
        client.flush()
    return stream_id


def test_post_body_is_drained_and_credit_returned(h2c_server: ServerProcess) -> None:
    """Bodies larger than the 64 KiB stream window, 300 of them, 60 MiB in all against a
    16 MiB connection window: the server answers 405 at once, then drains each body or (RFC
    9113 section 8.1) resets its stream with NO_ERROR. Either way the connection-level credit
    of every byte that reached it comes back: were any lost, the uploads would stall once 16
    MiB had gone unreturned. The connection stays healthy.
    """
    client = RawH2Client(h2c_server.port, auto_ack=True)
    # No Nagle delay on our partial segments: this test is about credit, not latency.
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    body = os.urandom(200 * 1024)
    try:
        for _ in range(300):
            try:
                stream_id = _upload(client, "/hello.txt", body)
            except h2.exceptions.StreamClosedError:
                pytest.fail("server closed the stream before the body was sent")
            response = client.responses[stream_id]
            assert client.until(lambda r=response: r.ended, timeout=30)
            assert response.status == 405
            assert response.headers[b"allow"]
            assert response.reset_code in (None, 0)
        # The connection is still healthy afterwards.
        stream_id = client.request("/hello.txt")
        after = client.responses[stream_id]
        assert client.until(lambda: after.ended, timeout=30)
        assert after.status == 200
        assert bytes(after.body) == b"hello, h2stream\n"
        assert client.goaway is None
    finally:
        client.close()


@pytest.mark.parametrize(
    "path", ["/missing.bin", "/docs/missing.html", "/hello.txt/", "/nodir/", "/hello.txt/x"]
)
def test_missing_is_404(h2c_server: ServerProcess, path: str) -> None:
    assert request(h2c_server.port, path).status == 404
    assert request(h2c_server.port, path, "HEAD").status == 404


def test_curl_missing_is_404(h2c_server: ServerProcess) -> None:
    got = run_curl("--http2-prior-knowledge", "-w", "%{http_code}", "-o", "/dev/null",
               f"{h2c_server.url}/missing.bin")  # fmt: skip
    assert got.stdout == b"404"


def test_percent_decoded_path(h2c_server: ServerProcess) -> None:
    response = request(h2c_server.port, "/%68ello%2Etxt")
    assert response.status == 200
    assert bytes(response.body) == b"hello, h2stream\n"


# --------------------------------------------------------------------------- traversal

SECRET = b"TOP-SECRET-" + os.urandom(8).hex().encode()


@pytest.fixture(scope="module")
def jail(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ROOT with symlinks out of it, and a secret next to it."""
    base = tmp_path_factory.mktemp("jail")
    (base / "secret").write_bytes(SECRET)
    (base / "outside").mkdir()
    (base / "outside" / "secret.txt").write_bytes(SECRET)
    root = base / "www"
    root.mkdir()
    (root / "public.txt").write_bytes(b"public\n")
    (root / "docs").mkdir()
    (root / "docs" / "index.html").write_bytes(b"<p>docs</p>\n")
    (root / "escape").symlink_to("../outside/secret.txt")
    (root / "escape_abs").symlink_to(base / "secret")
    (root / "escdir").symlink_to("../outside")
    (root / "docs" / "up").symlink_to("../..")
    (root / "docs" / "root_link").symlink_to("..")
    (root / "inside_link").symlink_to("public.txt")
    return root


@pytest.fixture(scope="module")
def jail_server(jail: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(jail)
    yield server
    server.stop()


def _traversal_paths(jail: Path) -> list[str]:
    secret = str(jail.parent / "secret")
    return [
        "/../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/%2E%2E/%2E%2E/etc/passwd",
        "/..%2f..%2fetc/passwd",
        "/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "//etc/passwd",
        "/%2fetc%2fpasswd",
        "/%00",
        "/public.txt%00",
        "/public.txt%00.html",
        "/docs/../../secret",
        "/../secret",
        "/./../secret",
        "/.%2e/secret",
        "/%2e./secret",
        "/docs/%2e%2e/%2e%2e/secret",
        "/docs/..%2f..%2fsecret",
        "/..\\secret",
        "/..%5csecret",
        "/%252e%252e/secret",
        "/%c0%ae%c0%ae/secret",
        "/" + secret,
        "/" + secret.replace("/", "%2f"),
        "/escape",
        "/escape_abs",
        "/escdir/secret.txt",
        "/escdir/",
        "/docs/up/secret",
        "/docs/up/../secret",
    ]


def test_traversal_never_escapes_root(jail_server: ServerProcess, jail: Path) -> None:
    failures = []
    for path in _traversal_paths(jail):
        for method in ("GET", "HEAD"):
            response = request(jail_server.port, path, method)
            body = bytes(response.body)
            if (
                response.status not in (400, 403, 404)
                or SECRET in body
                or b"root:" in body
                or (method == "GET" and not response.ended)
            ):
                failures.append((method, path, response.status, body[:60]))
    assert not failures


def test_curl_path_as_is_traversal(jail_server: ServerProcess) -> None:
    for path in ("/../secret", "/docs/../../secret", "/%2e%2e/secret", "/escape"):
        got = run_curl("--http2-prior-knowledge", "--path-as-is", "-w", "\n%{http_code}",
                   f"{jail_server.url}{path}")  # fmt: skip
        assert got.returncode == 0, got.stderr
        body, _, status = got.stdout.rpartition(b"\n")
        assert status in (b"400", b"403", b"404"), path
        assert SECRET not in body


def test_links_inside_root_still_work(jail_server: ServerProcess) -> None:
    """The refusals above are not a blanket ban: symlinks that stay inside ROOT are served."""
    for path in ("/public.txt", "/inside_link", "/docs/root_link/public.txt"):
        response = request(jail_server.port, path)
        assert response.status == 200, path
        assert bytes(response.body) == b"public\n"
    assert request(jail_server.port, "/docs/root_link/docs/").status == 200
    # Through a link that leaves ROOT and comes back, the path is still refused or served
    # from inside: never anything else.
    back_in = request(jail_server.port, "/docs/up/www/public.txt")
    assert back_in.status in (200, 403, 404)
    if back_in.status == 200:
        assert bytes(back_in.body) == b"public\n"
