"""gRPC call lifecycles in-process, where the test can watch the handlers: deadlines cancel
the handler (its ``finally`` runs), a client's cancel does too, a failing handler is INTERNAL
without its text, a request without ``te: trailers`` is refused, and the
health service says NOT_SERVING once the server drains."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.grpc_clients import (
    NOT_SERVING,
    SERVING,
    Methods,
    RawGrpc,
    address,
    grpc,
)
from support.polling import wait_until
from support.servers import AppServer

from h2stream.handlers.grpc import Call, GrpcApp, GrpcError, GrpcService, Status

SLOW = "/test.Probe/Slow"
FAIL = "/test.Probe/Fail"
REFUSE = "/test.Probe/Refuse"
ENDLESS = "/test.Probe/Endless"
HEADERS_SEEN = "/test.Probe/Headers"


class Probe:
    def __init__(self) -> None:
        self.finally_ran = threading.Event()
        self.cancelled = threading.Event()
        self.encoding: str | None = None


def build_app(probe: Probe) -> GrpcApp:
    app = GrpcApp()

    @app.grpc.unary(SLOW)
    async def slow(request: bytes, call: Call) -> bytes:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            probe.cancelled.set()
            raise
        finally:
            probe.finally_ran.set()
        return request

    @app.grpc.unary(FAIL)
    async def fail(request: bytes, call: Call) -> bytes:
        raise ValueError("secret database password")

    @app.grpc.unary(REFUSE)
    async def refuse(request: bytes, call: Call) -> bytes:
        raise GrpcError(Status.PERMISSION_DENIED, "not you: ü%")

    @app.grpc.server_stream(ENDLESS)
    async def endless(request: bytes, call: Call) -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"y" * 65536
        finally:
            probe.finally_ran.set()

    @app.grpc.unary(HEADERS_SEEN)
    async def headers_seen(request: bytes, call: Call) -> bytes:
        probe.encoding = call.header("grpc-encoding")
        return request

    return app


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def server(files_root: Path, probe: Probe) -> Iterator[AppServer]:
    app_server = AppServer(files_root, build_app(probe))
    yield app_server
    app_server.stop()


@pytest.fixture
def methods(server: AppServer) -> Iterator[Methods]:
    with grpc.insecure_channel(address(server.url)) as channel:
        yield Methods(channel)


def test_deadline_cancels_the_handler(methods: Methods, probe: Probe, server: AppServer) -> None:
    with pytest.raises(grpc.RpcError) as failure:
        methods.unary(SLOW)(b"x", timeout=0.1)
    assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert probe.finally_ran.wait(10)
    assert server.wait_no_tasks()


def test_server_side_deadline_status(server: AppServer, probe: Probe) -> None:
    # A raw client that never gives up by itself: the status comes from the server.
    raw = RawGrpc(server.port)
    try:
        stream_id = raw.call(SLOW, b"x", [("grpc-timeout", "100m")])
        assert raw.until(lambda: raw.calls[stream_id].ended)
        call = raw.calls[stream_id]
        assert call.field(b"grpc-status") == b"4"
        assert call.field(b":status") == b"200"
        assert probe.cancelled.is_set() and probe.finally_ran.is_set()
    finally:
        raw.close()


def test_client_cancel_cancels_the_handler(
    methods: Methods, probe: Probe, server: AppServer
) -> None:
    call = methods.server_stream(ENDLESS)(b"", timeout=60)
    for index, _ in enumerate(call):
        if index == 50:
            call.cancel()
            break
    assert probe.finally_ran.wait(10)
    assert server.wait_no_tasks()


def test_handler_exception_is_internal_without_its_text(methods: Methods) -> None:
    with pytest.raises(grpc.RpcError) as failure:
        methods.unary(FAIL)(b"x", timeout=20)
    assert failure.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in (failure.value.details() or "")


def test_handler_exception_text_when_exposed(files_root: Path, probe: Probe) -> None:
    app = build_app(probe)
    app.grpc = GrpcService(expose_errors=True)
    app.grpc.unary(FAIL)(_fail)
    exposing = AppServer(files_root, app)
    try:
        with (
            grpc.insecure_channel(address(exposing.url)) as channel,
            pytest.raises(grpc.RpcError) as failure,
        ):
            Methods(channel).unary(FAIL)(b"x", timeout=20)
        assert failure.value.code() == grpc.StatusCode.INTERNAL
        assert failure.value.details() == "secret database password"
    finally:
        exposing.stop()


async def _fail(request: bytes, call: Call) -> bytes:
    raise ValueError("secret database password")


def test_handler_status_and_percent_encoded_message(methods: Methods) -> None:
    with pytest.raises(grpc.RpcError) as failure:
        methods.unary(REFUSE)(b"x", timeout=20)
    assert failure.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert failure.value.details() == "not you: ü%"


def test_gzip_request_is_seen_as_gzip(methods: Methods, probe: Probe) -> None:
    payload = b"compress me " * 10_000
    reply = methods.unary(HEADERS_SEEN)(payload, compression=grpc.Compression.Gzip, timeout=20)
    assert reply == payload
    assert probe.encoding == "gzip"


def test_te_trailers_required(server: AppServer) -> None:
    raw = RawGrpc(server.port)
    try:
        stream_id = raw.call(SLOW, b"x", te=False)
        assert raw.until(lambda: raw.calls[stream_id].ended)
        call = raw.calls[stream_id]
        # Trailers-only: one HEADERS frame with END_STREAM carries the status.
        assert call.field(b":status") == b"200"
        assert call.field(b"grpc-status") == b"13"
        assert not call.data
    finally:
        raw.close()


def test_health_not_serving_while_draining(server: AppServer) -> None:
    raw = RawGrpc(server.port)
    try:
        first = raw.call("/grpc.health.v1.Health/Check", b"")
        assert raw.until(lambda: raw.calls[first].ended)
        assert bytes(raw.calls[first].data[5:]) == SERVING
        # A stream that stalls on its window keeps the drain waiting.
        held = raw.call(ENDLESS, b"")
        assert raw.until(lambda: len(raw.calls[held].data) > 0)
        server.soon(_start_drain, server)
        assert raw.until(lambda: bool(raw.goaways))
        # The first GOAWAY still admits new streams (its last stream id is the largest).
        during = raw.call("/grpc.health.v1.Health/Check", b"")
        assert raw.until(lambda: raw.calls[during].ended)
        assert raw.calls[during].field(b"grpc-status") == b"0"
        assert bytes(raw.calls[during].data[5:]) == NOT_SERVING
    finally:
        raw.close()
    assert wait_until(lambda: server.server.draining, 5)


_DRAINS: list[asyncio.Task[None]] = []


def _start_drain(server: Any) -> None:
    # Kept referenced until the test ends: the loop holds tasks only weakly.
    _DRAINS.append(asyncio.ensure_future(server.server.drain()))


def test_health_check_by_service_name(methods: Methods) -> None:
    def request(service: str) -> bytes:
        name = service.encode()
        return bytes((0x0A, len(name))) + name  # HealthCheckRequest{service = 1}

    assert methods.health(request("test.Probe"), timeout=20) == SERVING
    assert methods.health(request(""), timeout=20) == SERVING
    with pytest.raises(grpc.RpcError) as failure:
        methods.health(request("no.Such"), timeout=20)
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND


def test_grpc_web_is_not_grpc(server: AppServer) -> None:
    # application/grpc-web frames differently: it falls through to the app (404 here).
    raw = RawGrpc(server.port)
    try:
        stream_id = raw.call(SLOW, b"x", content_type="application/grpc-web")
        assert raw.until(lambda: raw.calls[stream_id].ended)
        assert raw.calls[stream_id].field(b":status") != b"200"
    finally:
        raw.close()
