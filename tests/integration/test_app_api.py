"""The application API against real clients: responses, streaming, trailers, errors, resets.

An App runs in-process (composed as ``h2stream serve --app`` composes it) so tests can watch its
handlers through threading primitives; the CLI wiring (``--app MODULE:ATTR``, fall-through to
ROOT, the built-in endpoints beside an app, no fd leak) runs as a real server process with the
example app. No timing assertions: bounded waits only.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import h2.errors
import httpx
import psutil
import pytest
from support.clients import UploadClient
from support.curl import curl_command
from support.files import SIZES
from support.polling import wait_until
from support.servers import AppServer, ServerProcess

from h2stream.handlers.app import App, FileResponse, Request, Response

QUIET = 0.3
WINDOW = 65535
CHUNK = 16384
INTERNAL_ERROR = int(h2.errors.ErrorCodes.INTERNAL_ERROR)


class Probe:
    """What handlers report to the test thread."""

    def __init__(self) -> None:
        self.sends_done = 0
        self.started = threading.Event()
        self.cancelled = threading.Event()
        self.seen: BaseException | None = None
        self.calls = 0


def build_app(root: Path, probe: Probe) -> App:
    app = App()

    @app.route("/hello")
    async def hello(request: Request) -> Response:
        probe.calls += 1
        return Response(body=f"hello {request.args.get('name', 'world')}\n")

    @app.route("/file")
    async def file(request: Request) -> Response:
        return Response(body=FileResponse(path=str(root / "mib.bin")))

    @app.route("/file-part")
    async def file_part(request: Request) -> Response:
        return Response(body=FileResponse(path=str(root / "mib.bin"), offset=100, length=1000))

    @app.route("/big-file")
    async def big_file(request: Request) -> Response:
        return Response(body=FileResponse(path=str(root / "f100m.bin")))

    @app.route("/iter")
    async def iterate(request: Request) -> Response:
        count = int(request.args.get("n", "10"))

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(count):
                yield bytes([i % 256]) * 10000

        return Response(body=chunks(), headers=[("x-kind", "iter")])

    @app.route("/stream")
    async def stream(request: Request) -> None:
        count = int(request.args.get("n", "64"))
        out = request.start_response(200, [("x-kind", "stream")])
        probe.sends_done = 0
        for i in range(count):
            await out.send(bytes([i % 256]) * CHUNK)
            probe.sends_done += 1
        await out.end(trailers=[("x-chunks", str(count)), ("x-done", "yes")])

    @app.route("/bytes-trailers")
    async def bytes_trailers(request: Request) -> Response:
        return Response(body=b"payload", trailers=[("x-sum", "7")])

    @app.route("/fail-before")
    async def fail_before(request: Request) -> Response:
        raise RuntimeError("broken before headers")

    @app.route("/fail-after")
    async def fail_after(request: Request) -> None:
        out = request.start_response(200)
        await out.send(b"x" * 1000)
        raise RuntimeError("broken after headers")

    @app.route("/no-answer")
    async def no_answer(request: Request) -> None:
        return None

    @app.route("/hang")
    async def hang(request: Request) -> None:
        probe.started.set()
        try:
            await asyncio.sleep(60)
        except BaseException as exc:
            probe.seen = exc
            probe.cancelled.set()
            raise

    @app.route("/hang-send")
    async def hang_send(request: Request) -> None:
        out = request.start_response(200)
        probe.started.set()
        try:
            while True:
                await out.send(b"y" * CHUNK)
        except BaseException as exc:
            probe.seen = exc
            probe.cancelled.set()
            raise

    @app.route("/echo-head", methods=("GET", "HEAD"))
    async def echo_head(request: Request) -> None:
        out = request.start_response(200, content_type="application/octet-stream")
        await out.send(b"z" * 5000)

    @app.route("/prefix/*")
    async def prefix(request: Request) -> Response:
        return Response(body=request.path)

    return app


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def app_server(files_root: Path, probe: Probe) -> Iterator[AppServer]:
    server = AppServer(files_root, build_app(files_root, probe))
    yield server
    server.stop()


def fetch(client: UploadClient, path: str, **kwargs: Any) -> Any:
    stream_id = client.request(path, **kwargs)
    response = client.responses[stream_id]
    assert client.until(lambda: response.ended, timeout=30)
    return response


# ----------------------------------------------------------------------- responses


def test_bytes_file_iterator_and_prefix(app_server: AppServer, files_root: Path) -> None:
    with httpx.Client(http1=False, http2=True, timeout=15) as client:
        r = client.get(f"{app_server.url}/hello?name=h2")
        assert (r.status_code, r.text) == (200, "hello h2\n")
        assert r.headers["content-length"] == "9"
        r = client.get(f"{app_server.url}/file")
        assert r.content == (files_root / "mib.bin").read_bytes()
        assert r.headers["content-length"] == str(SIZES["mib.bin"])
        r = client.get(f"{app_server.url}/file-part")
        assert r.content == (files_root / "mib.bin").read_bytes()[100:1100]
        r = client.get(f"{app_server.url}/iter?n=30")
        assert r.headers["x-kind"] == "iter"
        assert r.content == b"".join(bytes([i]) * 10000 for i in range(30))
        r = client.get(f"{app_server.url}/prefix/a/b")
        assert r.text == "/prefix/a/b"
        # Not a route: the directory behind the app answers.
        r = client.get(f"{app_server.url}/hello.txt")
        assert r.text == "hello, h2stream\n"
        r = client.post(f"{app_server.url}/hello", content=b"x")
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
        r = client.head(f"{app_server.url}/echo-head")
        assert r.status_code == 200 and r.content == b""


def test_trailers_arrive(app_server: AppServer) -> None:
    client = UploadClient(app_server.port)
    try:
        response = fetch(client, "/stream?n=5")
        assert response.status == 200
        assert bytes(response.body) == b"".join(bytes([i]) * CHUNK for i in range(5))
        assert client.trailers[response.stream_id] == {b"x-chunks": b"5", b"x-done": b"yes"}
        response = fetch(client, "/bytes-trailers")
        assert bytes(response.body) == b"payload"
        assert client.trailers[response.stream_id] == {b"x-sum": b"7"}
    finally:
        client.close()


def test_send_returns_only_when_flow_control_lets_the_chunk_go(
    app_server: AppServer, probe: Probe
) -> None:
    # The client never returns credit: 65,535 bytes of stream window, i.e. three whole
    # 16 KiB chunks and most of a fourth. The handler's fourth send must still be waiting.
    client = UploadClient(app_server.port, auto_ack=False)
    try:
        stream_id = client.request("/stream?n=64")
        assert client.until(lambda: len(client.responses[stream_id].body) >= WINDOW)
        client.quiet_for(QUIET)
        assert len(client.responses[stream_id].body) == WINDOW
        assert probe.sends_done == WINDOW // CHUNK
        # Open the windows: the producer resumes and finishes, trailers included.
        client.open_window(None, 64 * CHUNK)
        client.open_window(stream_id, 64 * CHUNK)
        assert client.until(lambda: client.responses[stream_id].ended)
        assert probe.sends_done == 64
        assert client.trailers[stream_id][b"x-chunks"] == b"64"
    finally:
        client.close()


# ----------------------------------------------------------------------- errors


def test_handler_error_before_headers_is_500_with_request_id(
    app_server: AppServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="h2stream.app")
    with httpx.Client(http1=False, http2=True, timeout=15) as client:
        r = client.get(f"{app_server.url}/fail-before")
        assert r.status_code == 500
        request_id = r.headers["x-request-id"]
        r = client.get(f"{app_server.url}/no-answer")
        assert r.status_code == 500
        # A client's own id is the one logged.
        r = client.get(f"{app_server.url}/fail-before", headers={"x-request-id": "client-id-42"})
        assert r.status_code == 500 and r.headers["x-request-id"] == "client-id-42"
    logged = [rec.getMessage() for rec in caplog.records if rec.name == "h2stream.app"]
    assert any(f"request_id={request_id}" in line for line in logged)
    assert any("request_id=client-id-42" in line for line in logged)
    assert any("broken before headers" in (rec.exc_text or "") for rec in caplog.records)


def test_handler_error_after_headers_resets_stream(
    app_server: AppServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="h2stream.app")
    client = UploadClient(app_server.port)
    try:
        response = fetch(client, "/fail-after", extra=[("x-request-id", "after-1")])
        assert response.status == 200
        assert response.reset_code == INTERNAL_ERROR
        # The connection is fine: the next request on it completes.
        assert bytes(fetch(client, "/hello").body) == b"hello world\n"
    finally:
        client.close()
    assert any("request_id=after-1" in rec.getMessage() for rec in caplog.records)


@pytest.mark.parametrize("path", ["/hang", "/hang-send"])
def test_client_reset_cancels_handler(app_server: AppServer, probe: Probe, path: str) -> None:
    client = UploadClient(app_server.port, auto_ack=False)
    try:
        stream_id = client.request(path)
        assert probe.started.wait(10)
        if path == "/hang-send":
            # Parked on flow control, inside send().
            assert client.until(lambda: len(client.responses[stream_id].body) >= WINDOW)
        client.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        client.flush()
        assert probe.cancelled.wait(10)
        assert isinstance(probe.seen, asyncio.CancelledError)
        assert app_server.wait_no_tasks()
        client.open_window(None, WINDOW)  # the reset stream used up the connection window
        assert bytes(fetch(client, "/hello").body) == b"hello world\n"
    finally:
        client.close()


def test_resets_mid_file_and_mid_stream_leak_nothing(app_server: AppServer) -> None:
    this = psutil.Process()

    def cycle() -> None:
        client = UploadClient(app_server.port, auto_ack=False, connection_window=1 << 24)
        try:
            ids = [client.request(p) for p in ("/big-file", "/stream?n=1000", "/iter?n=10000")]
            assert client.until(lambda: all(len(client.responses[i].body) > 0 for i in ids))
            for stream_id in ids:
                client.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            client.open_window(None, 1 << 20)
            assert bytes(fetch(client, "/hello").body) == b"hello world\n"
        finally:
            client.close()

    cycle()  # warm-up: lazily opened things (caches, the pattern memfd) exist from here on
    assert app_server.wait_no_tasks()
    before = this.num_fds()
    for _ in range(10):
        cycle()
    assert app_server.wait_no_tasks()
    assert wait_until(lambda: this.num_fds() <= before)


# ----------------------------------------------------------------------- the CLI


def test_cli_app_with_root_and_builtins(server_factory: Any, files_root: Path) -> None:
    server: ServerProcess = server_factory("--app", "examples.export_app:app")
    base = curl_command("--http2-prior-knowledge")
    out = subprocess.run(
        [*base, "-D", "-", "-o", "/dev/null", f"{server.url}/export.csv?rows=5000"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "x-rows: 5000" in out and "x-sha256:" in out  # trailers, shown by curl -D
    csv = subprocess.run(
        [*base, f"{server.url}/export.csv?rows=5000"], capture_output=True, check=True
    ).stdout
    trailer_sha = out.split("x-sha256: ")[1].split()[0]
    assert hashlib.sha256(csv).hexdigest() == trailer_sha
    assert csv.count(b"\n") == 5001
    ndjson = subprocess.run(
        [*base, "--compressed", f"{server.url}/export.ndjson?rows=3000"],
        capture_output=True,
        check=True,
    ).stdout
    assert [json.loads(line)["id"] for line in ndjson.splitlines()] == list(range(1, 3001))
    # Unmatched paths fall through to ROOT; the built-in endpoints sit in front of both.
    hello = subprocess.run([*base, f"{server.url}/hello.txt"], capture_output=True, check=True)
    assert hello.stdout == b"hello, h2stream\n"
    code = subprocess.run(
        [*base, "-o", "/dev/null", "-w", "%{http_code}", f"{server.url}/_h2stream/bytes/1K"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert code == "200"
    upload = subprocess.run(
        [*base, "--data-binary", f"@{files_root / 'mib.bin'}", f"{server.url}/upload"],
        capture_output=True,
        check=True,
    ).stdout
    answer = json.loads(upload)
    assert answer["bytes"] == SIZES["mib.bin"]
    assert answer["sha256"] == hashlib.sha256((files_root / "mib.bin").read_bytes()).hexdigest()


def test_cli_app_without_root_does_not_serve_files(server_factory: Any) -> None:
    # No ROOT: the CLI with --app only.
    server = ServerProcess(None, "--app", "examples.export_app:app")
    try:
        with httpx.Client(http1=False, http2=True, timeout=15) as client:
            assert client.get(f"{server.url}/hello.txt").status_code == 404
            r = client.get(f"{server.url}/export.ndjson?rows=2")
            assert r.status_code == 200 and len(r.text.splitlines()) == 2
    finally:
        server.stop()


def test_cli_resets_leak_no_fds(server_factory: Any) -> None:
    server: ServerProcess = server_factory("--app", "examples.export_app:app")

    def cycle() -> None:
        client = UploadClient(server.port, auto_ack=False, connection_window=1 << 24)
        try:
            ids = [client.request(p) for p in ("/export.csv?rows=1000000", "/f100m.bin")]
            assert client.until(lambda: all(len(client.responses[i].body) > 0 for i in ids))
            for stream_id in ids:
                client.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            client.open_window(None, 1 << 20)
            assert fetch(client, "/hello.txt").status == 200
        finally:
            client.close()

    cycle()
    baseline = server.fd_count()
    for _ in range(10):
        cycle()
    assert wait_until(lambda: server.fd_count() <= baseline)
