"""gRPC methods with JSON-bytes messages, for benchmarks and examples.

h2stream serve --app examples.grpc_bench:app      # or --app examples/grpc_bench.py:app

- /h2stream.bench.Bench/Stream  server-streaming: {"count": N, "size": S} -> N messages of S bytes
- /h2stream.bench.Bench/Echo    unary: the request message back
- /h2stream.bench.Bench/Upload  client-streaming: -> {"messages": M, "bytes": B}
- /h2stream.bench.Bench/Chat    bidirectional: each message back as it arrives
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from h2stream.handlers.grpc import Call, GrpcApp

app = GrpcApp()
PREFIX = "/h2stream.bench.Bench/"
# Replies share one buffer per size: the bench measures the server, not bytes().
_PAYLOADS: dict[int, bytes] = {}


@app.grpc.server_stream(PREFIX + "Stream")
async def stream(request: bytes, call: Call) -> AsyncIterator[bytes]:
    spec = json.loads(request)
    count, size = int(spec["count"]), int(spec["size"])
    payload = _PAYLOADS.get(size)
    if payload is None:
        payload = _PAYLOADS.setdefault(size, b"x" * size)
    for _ in range(count):
        yield payload


@app.grpc.unary(PREFIX + "Echo")
async def echo(request: bytes, call: Call) -> bytes:
    return request


@app.grpc.client_stream(PREFIX + "Upload")
async def upload(requests: Call, call: Call) -> bytes:
    messages = total = 0
    async for message in requests:
        messages += 1
        total += len(message)
    return json.dumps({"messages": messages, "bytes": total}).encode()


@app.grpc.bidi_stream(PREFIX + "Chat")
async def chat(requests: Call, call: Call) -> AsyncIterator[bytes]:
    async for message in requests:
        yield message
