"""Uploads: inbound flow control is backpressure, limits answer 413, bad lengths reset a stream.

The server returns window credit only as a handler reads, so a slow (here: gated) handler
holds the client to one stream window: what the client has sent minus what the handler has
consumed never exceeds it, and neither does what the server buffers. Bodies over the limit are
refused before reading when ``content-length`` says so, else as they cross the limit, and the
stream is reset without buffering. DATA that disagrees with ``content-length`` is a stream
error (RFC 9113 §8.1.1): RST_STREAM(PROTOCOL_ERROR), and the connection carries on. Aborted
uploads must also hand their connection-level credit back, or the connection would stall: the
servers here get a small connection window so a leak would show within a few requests.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h2.errors
import pytest
from support.clients import UploadClient
from support.commands import require
from support.curl import run_curl
from support.polling import wait_until
from support.servers import AppServer

from h2stream.core.stats import STATS
from h2stream.handlers.app import App, Request, Response

WINDOW = 65535
LIMIT = 100_000
PROTOCOL_ERROR = int(h2.errors.ErrorCodes.PROTOCOL_ERROR)
NO_ERROR = int(h2.errors.ErrorCodes.NO_ERROR)
# Small enough that leaked connection credit would stall the connection within a few uploads.
CONNECTION_WINDOW = 256 * 1024


class Gate:
    """A slow handler: it reads one chunk per permit the test hands out."""

    def __init__(self) -> None:
        self.permits: asyncio.Semaphore | None = None
        self.request: Request | None = None
        self.consumed = 0
        self.max_buffered = 0
        self.calls = 0
        self.cancelled = False


def build_app(gate: Gate) -> App:
    app = App()

    @app.route("/slow", methods=("POST",))
    async def slow(request: Request) -> Response:
        gate.permits = asyncio.Semaphore(0)
        gate.request = request
        digest = hashlib.sha256()
        while True:
            gate.max_buffered = max(gate.max_buffered, request.body_buffered)
            await gate.permits.acquire()
            chunk = await request.read()
            if not chunk:
                break
            digest.update(chunk)
            gate.consumed += len(chunk)
        return Response(body=json.dumps({"bytes": gate.consumed, "sha256": digest.hexdigest()}))

    @app.route("/sleepy", methods=("POST", "PUT"))
    async def sleepy(request: Request) -> Response:
        size = 0
        async for chunk in request:
            gate.max_buffered = max(gate.max_buffered, request.body_buffered + len(chunk))
            size += len(chunk)
            await asyncio.sleep(0.001)
        return Response(body=json.dumps({"bytes": size}))

    @app.route("/count", methods=("POST", "PUT"))
    async def count(request: Request) -> Response:
        return Response(body=json.dumps({"bytes": len(await request.body())}))

    @app.route("/limited", methods=("POST", "PUT"), max_body=LIMIT)
    async def limited(request: Request) -> Response:
        gate.calls += 1
        try:
            size = 0
            async for chunk in request:
                size += len(chunk)
        except asyncio.CancelledError:
            gate.cancelled = True
            raise
        return Response(body=json.dumps({"bytes": size}))

    return app


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def server(files_root: Path, gate: Gate) -> Iterator[AppServer]:
    app_server = AppServer(files_root, build_app(gate), connection_window_size=CONNECTION_WINDOW)
    yield app_server
    app_server.stop()


def answer(client: UploadClient, stream_id: int) -> dict[str, Any]:
    response = client.responses[stream_id]
    assert client.until(lambda: response.ended, timeout=30)
    assert response.status == 200, response
    return dict(json.loads(bytes(response.body)))


def test_slow_handler_holds_the_client_to_one_window(server: AppServer, gate: Gate) -> None:
    body = os.urandom(1 << 20)
    client = UploadClient(server.port)
    try:
        stream_id = client.request("/slow", method="POST", end_stream=False)
        # The handler reads nothing yet: the client gets exactly one stream window out.
        sent = client.upload(stream_id, body, timeout=1.0)
        assert sent == WINDOW
        assert wait_until(lambda: gate.request is not None and gate.request.body_buffered == WINDOW)
        assert gate.consumed == 0
        # One chunk per permit: the client advances only as the handler consumes.
        pos = sent
        steps = 0
        while gate.consumed < len(body) and steps < 2000:
            steps += 1
            assert gate.permits is not None
            server.soon(gate.permits.release)
            if pos < len(body):
                pos += client.send_some(stream_id, memoryview(body)[pos:], end=True)
            client.receive_once(0.01)
            assert pos - gate.consumed <= WINDOW
            assert gate.request is not None and gate.request.body_buffered <= WINDOW
        assert pos == len(body) and gate.consumed == len(body)
        assert gate.permits is not None
        server.soon(gate.permits.release)  # the read that sees the end of the body
        result = answer(client, stream_id)
        assert result == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        assert gate.max_buffered <= WINDOW
    finally:
        client.close()


def test_curl_upload_to_slow_handler_stays_within_a_window(
    server: AppServer, gate: Gate, tmp_path: Path
) -> None:
    upload = tmp_path / "upload.bin"
    upload.write_bytes(os.urandom(4 << 20))
    url = f"{server.url}/sleepy"
    done = run_curl("--http2-prior-knowledge", "-T", str(upload), url, max_time=60, check=True)
    assert json.loads(done.stdout) == {"bytes": 4 << 20}
    # Credit goes back only as the handler reads, so at most one window waits in the server.
    assert 0 < gate.max_buffered <= WINDOW


def test_declared_length_over_limit_is_413_before_reading(server: AppServer, gate: Gate) -> None:
    before = STATS.request_body_too_large
    client = UploadClient(server.port)
    try:
        stream_id = client.request(
            "/limited", method="POST", extra=[("content-length", str(LIMIT + 1))], end_stream=False
        )
        response = client.responses[stream_id]
        assert client.until(lambda: response.ended)
        assert response.status == 413
        assert response.reset_code == NO_ERROR  # "stop sending", after a complete response
        assert gate.calls == 0  # no handler, no Task
        assert STATS.request_body_too_large == before + 1
        # The connection goes on.
        stream_id = client.request("/count", method="POST", end_stream=False)
        client.upload(stream_id, b"12345")
        assert answer(client, stream_id) == {"bytes": 5}
    finally:
        client.close()


def test_body_crossing_limit_gets_413_and_reset_without_buffering(
    server: AppServer, gate: Gate
) -> None:
    client = UploadClient(server.port)
    try:
        stream_id = client.request("/limited", method="POST", end_stream=False)
        sent = client.upload(stream_id, os.urandom(4 * LIMIT), timeout=10)
        response = client.responses[stream_id]
        assert client.until(lambda: response.ended)
        assert response.status == 413 and response.reset_code == NO_ERROR
        # The upload stopped within one window of the limit: nothing beyond was accepted.
        assert sent <= LIMIT + WINDOW
        assert wait_until(lambda: gate.cancelled)
        assert server.wait_no_tasks()
    finally:
        client.close()


def test_aborted_uploads_return_connection_credit(server: AppServer, gate: Gate) -> None:
    # Each aborted upload leaves up to a window of DATA unread in the server; 20 of them are
    # far more than the 256 KiB connection window, so leaked credit would stall the last one.
    client = UploadClient(server.port)
    try:
        for _ in range(20):
            stream_id = client.request("/limited", method="POST", end_stream=False)
            client.upload(stream_id, os.urandom(2 * LIMIT), timeout=10)
            response = client.responses[stream_id]
            assert client.until(lambda response=response: response.ended)
            assert response.status == 413
        for _ in range(4):
            stream_id = client.request("/slow", method="POST", end_stream=False)
            pending = client.upload(stream_id, b"x" * 50_000, timeout=0.3)
            assert pending == 50_000  # the connection window has room for all of it
            client.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            client.flush()
            assert server.wait_no_tasks()
        stream_id = client.request("/count", method="POST", end_stream=False)
        body = os.urandom(3 * CONNECTION_WINDOW)
        assert client.upload(stream_id, body) == len(body)
        assert answer(client, stream_id) == {"bytes": len(body)}
        assert client.goaway is None
    finally:
        client.close()


def test_real_client_upload_over_limit_gets_413(server: AppServer, tmp_path: Path) -> None:
    # nghttp declares content-length: the 413 comes before the server reads the body, then
    # RST_STREAM(NO_ERROR). (curl 7.88 reports that reset as error 92 instead of showing the
    # complete 413; newer curl and nghttp2's own client accept it, as RFC 9113 §8.1 says.)
    nghttp = require("nghttp")
    upload = tmp_path / "big.bin"
    upload.write_bytes(os.urandom(4 * LIMIT))
    done = subprocess.run(
        [nghttp, "-v", "-d", str(upload), f"{server.url}/limited"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ":status: 413" in done.stdout, done.stdout[-2000:]
    assert "RST_STREAM" in done.stdout and "NO_ERROR" in done.stdout


@pytest.mark.parametrize(("declared", "actual"), [(10, 20), (100, 10)])
def test_content_length_mismatch_is_a_stream_error(
    server: AppServer, declared: int, actual: int
) -> None:
    before = STATS.content_length_mismatch
    client = UploadClient(server.port)
    try:
        stream_id = client.request(
            "/count", method="POST", extra=[("content-length", str(declared))], end_stream=False
        )
        client.conn.send_data(stream_id, b"a" * actual, end_stream=True)
        client.flush()
        response = client.responses[stream_id]
        assert client.until(lambda: response.ended)
        assert response.reset_code == PROTOCOL_ERROR
        assert client.goaway is None
        assert STATS.content_length_mismatch == before + 1
        # Another stream on the same connection completes.
        stream_id = client.request("/count", method="POST", end_stream=False)
        client.upload(stream_id, b"hello")
        assert answer(client, stream_id) == {"bytes": 5}
    finally:
        client.close()


def test_content_length_mismatches_do_not_leak_connection_credit(server: AppServer) -> None:
    client = UploadClient(server.port)
    try:
        for _ in range(12):
            # 48 KiB declared 10: h2 counts the frames against the connection window before it
            # notices; the server must give that credit back.
            stream_id = client.request(
                "/count", method="POST", extra=[("content-length", "10")], end_stream=False
            )
            for _ in range(3):
                client.conn.send_data(stream_id, b"b" * 16384)
            client.flush()
            response = client.responses[stream_id]
            assert client.until(lambda response=response: response.ended)
            assert response.reset_code == PROTOCOL_ERROR
        stream_id = client.request("/count", method="POST", end_stream=False)
        body = os.urandom(2 * CONNECTION_WINDOW)
        assert client.upload(stream_id, body) == len(body)
        assert answer(client, stream_id) == {"bytes": len(body)}
        assert client.goaway is None
    finally:
        client.close()
