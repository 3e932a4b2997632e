"""Per-method gRPC metrics through a real server's --metrics-bind listener: calls by status,
messages and bytes each way, after grpcio calls of the example app."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.grpc_clients import Methods, address, grpc, stream_spec
from support.metrics import scrape
from support.polling import wait_until

ECHO = "/h2stream.bench.Bench/Echo"
STREAM = "/h2stream.bench.Bench/Stream"


def test_calls_messages_and_bytes_by_method(observed: Callable[..., tuple[Any, str]]) -> None:
    server, base = observed("--app", "examples.grpc_bench:app")
    with grpc.insecure_channel(address(server.url)) as channel:
        methods = Methods(channel)
        for _ in range(3):
            assert methods.echo(b"x" * 100, timeout=20) == b"x" * 100
        assert len(list(methods.stream(stream_spec(10, 1000), timeout=20))) == 10
        with pytest.raises(grpc.RpcError):
            methods.unary("/no.Such/Method")(b"", timeout=20)

    def counted() -> bool:
        return scrape(base).value("h2stream_grpc_calls_total", method=ECHO, code="OK") == 3

    assert wait_until(counted, 10)
    got = scrape(base)
    assert got.value("h2stream_grpc_calls_total", method=STREAM, code="OK") == 1
    assert got.value("h2stream_grpc_calls_total", method="unknown", code="UNIMPLEMENTED") == 1
    assert got.value("h2stream_grpc_messages_total", method=ECHO, direction="in") == 3
    assert got.value("h2stream_grpc_messages_total", method=ECHO, direction="out") == 3
    assert got.value("h2stream_grpc_bytes_total", method=ECHO, direction="in") == 300
    assert got.value("h2stream_grpc_messages_total", method=STREAM, direction="out") == 10
    assert got.value("h2stream_grpc_bytes_total", method=STREAM, direction="out") == 10_000


def test_access_log_carries_grpc_status(server_factory: Callable[..., Any], tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    json_log = tmp_path / "access.json"
    plain = server_factory("--app", "examples.grpc_bench:app", "--access-log", str(log))
    structured = server_factory(
        "--app",
        "examples.grpc_bench:app",
        "--access-log",
        str(json_log),
        "--access-log-format",
        "json",
    )
    for server in (plain, structured):
        with grpc.insecure_channel(address(server.url)) as channel:
            methods = Methods(channel)
            assert methods.echo(b"logged", timeout=20) == b"logged"
            with pytest.raises(grpc.RpcError):
                methods.unary("/no.Such/Method")(b"", timeout=20)

    def lines(path: Path) -> list[str]:
        return path.read_text().splitlines() if path.exists() else []

    assert wait_until(lambda: len(lines(log)) >= 2 and len(lines(json_log)) >= 2, 10)
    echo_line = next(line for line in lines(log) if ECHO in line)
    assert echo_line.endswith(" grpc-status=0")
    unknown_line = next(line for line in lines(log) if "/no.Such/Method" in line)
    assert unknown_line.endswith(" grpc-status=12")
    records = [json.loads(line) for line in lines(json_log)]
    notes = {record["path"]: record.get("note") for record in records}
    assert notes == {ECHO: "grpc-status=0", "/no.Such/Method": "grpc-status=12"}
