"""gRPC clients for the gRPC tests: grpcio's generic callables (bytes in, bytes out), a raw
HTTP/2 gRPC caller built on the test frame helpers, and grpc-go built in GOPATH mode."""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hpack
import pytest

from .frames import (
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    PREFACE,
    Frame,
    frame,
    settings,
    take_frames,
    window_update,
)

grpc = pytest.importorskip("grpc")

BENCH = "/h2stream.bench.Bench/"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
SERVING = b"\x08\x01"
NOT_SERVING = b"\x08\x02"
GO_SOURCE = Path(__file__).resolve().parent / "grpc_go" / "client.go"
GOPATH = "/usr/share/gocode"  # Debian's golang-*-dev packages


def _same(data: bytes) -> bytes:
    return data


def address(url: str) -> str:
    """host:port of a server URL, as grpc targets name it."""
    return url.split("://", 1)[1]


class Methods:
    """The example app's methods as grpcio generic callables on one channel."""

    def __init__(self, channel: Any) -> None:
        codec = {"request_serializer": _same, "response_deserializer": _same}
        self.echo = channel.unary_unary(BENCH + "Echo", **codec)
        self.stream = channel.unary_stream(BENCH + "Stream", **codec)
        self.upload = channel.stream_unary(BENCH + "Upload", **codec)
        self.chat = channel.stream_stream(BENCH + "Chat", **codec)
        self.health = channel.unary_unary(HEALTH_CHECK, **codec)
        self.channel = channel

    def unary(self, name: str) -> Any:
        return self.channel.unary_unary(name, request_serializer=_same, response_deserializer=_same)

    def server_stream(self, name: str) -> Any:
        return self.channel.unary_stream(
            name, request_serializer=_same, response_deserializer=_same
        )


def stream_spec(count: int, size: int) -> bytes:
    return json.dumps({"count": count, "size": size}).encode()


def message(payload: bytes, compressed: bool = False) -> bytes:
    """One length-prefixed gRPC message."""
    return struct.pack(">BI", int(compressed), len(payload)) + payload


@dataclass
class RawCall:
    """What came back on one stream of a :class:`RawGrpc` connection."""

    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: bool = False

    def field(self, name: bytes) -> bytes | None:
        for key, value in [*self.headers, *self.trailers]:
            if key == name:
                return value
        return None


class RawGrpc:
    """gRPC calls over one raw HTTP/2 connection, frame by frame: the test decides which
    frames it answers (it never acknowledges a PING and carries on past a GOAWAY, as a
    client that has not read them yet would). The connection window is opened wide; each
    stream keeps the default 65,535-byte window, so a large reply stalls on it."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(PREFACE + settings() + window_update(0, 1 << 30))
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.calls: dict[int, RawCall] = {}
        self.goaways: list[Frame] = []
        self.next_id = 1
        self._buf = bytearray()

    def call(
        self,
        path: str,
        payload: bytes,
        extra: Sequence[tuple[str, str]] = (),
        te: bool = True,
        content_type: str = "application/grpc",
    ) -> int:
        stream_id = self.next_id
        self.next_id += 2
        block = self.encoder.encode(
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", path),
                (":authority", "127.0.0.1"),
                ("content-type", content_type),
                *([("te", "trailers")] if te else []),
                *extra,
            ]
        )
        self.calls[stream_id] = RawCall()
        self.sock.sendall(
            frame(HEADERS, END_HEADERS, stream_id, block)
            + frame(DATA, END_STREAM, stream_id, message(payload))
        )
        return stream_id

    def until(self, condition: Any, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                return False
            if not chunk:
                return condition()
            self._buf += chunk
            frames, used = take_frames(self._buf)
            del self._buf[:used]
            for received in frames:
                self._on_frame(received)
        return True

    def _on_frame(self, received: Frame) -> None:
        call = self.calls.get(received.stream_id)
        if received.kind == GOAWAY:
            self.goaways.append(received)
        elif received.kind == HEADERS and call is not None:
            fields = [
                (bytes(k), bytes(v)) for k, v in self.decoder.decode(received.payload, raw=True)
            ]
            if call.headers:
                call.trailers = fields
            else:
                call.headers = fields
            call.ended = call.ended or bool(received.flags & END_STREAM)
        elif received.kind == DATA and call is not None:
            call.data += received.payload
            call.ended = call.ended or bool(received.flags & END_STREAM)
        elif received.kind == 3 and call is not None:  # RST_STREAM
            call.reset = True

    def close(self) -> None:
        self.sock.close()


_GO_BINARY: list[str | None] = []


def go_client(build_dir: Path) -> str:
    """grpc-go's client (tests/support/grpc_go/client.go), built once per session in GOPATH
    mode from Debian's golang-google-grpc-dev; skips when Go or the package is missing."""
    if _GO_BINARY:
        if _GO_BINARY[0] is None:
            pytest.skip("grpc-go client did not build")
        return str(_GO_BINARY[0])
    go = shutil.which("go")
    if go is None or not Path(GOPATH, "src/google.golang.org/grpc").is_dir():
        _GO_BINARY.append(None)
        missing = "golang-go and golang-google-grpc-dev are needed for the grpc-go client"
        if os.environ.get("CI"):
            pytest.fail(f"{missing}: CI must install them (tools/run-tests)")
        pytest.skip(missing)
    binary = build_dir / "grpc-go-client"
    env = {
        **os.environ,
        "GOPATH": GOPATH,
        "GO111MODULE": "off",
        "GOCACHE": str(build_dir / "gocache"),
        "GOFLAGS": "",
    }
    result = subprocess.run(
        [go, "build", "-o", str(binary), str(GO_SOURCE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        _GO_BINARY.append(None)
        pytest.skip(f"grpc-go client did not build: {result.stderr[-2000:]}")
    _GO_BINARY.append(str(binary))
    return str(binary)


def run_go(binary: str, target: str, *args: str) -> dict[str, Any]:
    result = subprocess.run(
        [binary, target, *args], capture_output=True, text=True, timeout=90, check=True
    )
    return dict(json.loads(result.stdout))
