"""grpcio's own asyncio server serving the example app's contract with generic (bytes)
handlers, one process: the reference the gRPC scenarios compare against.

python -m bench.grpc_ref PORT
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc

SERVICE = "h2stream.bench.Bench"
_PAYLOADS: dict[int, bytes] = {}


async def stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
    spec = json.loads(request)
    size = int(spec["size"])
    payload = _PAYLOADS.setdefault(size, b"x" * size)
    for _ in range(int(spec["count"])):
        yield payload


async def echo(request: bytes, context: Any) -> bytes:
    return request


async def upload(requests: AsyncIterator[bytes], context: Any) -> bytes:
    messages = total = 0
    async for message in requests:
        messages += 1
        total += len(message)
    return json.dumps({"messages": messages, "bytes": total}).encode()


async def chat(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    async for message in requests:
        yield message


def handlers() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
            "Upload": grpc.stream_unary_rpc_method_handler(upload),
            "Chat": grpc.stream_stream_rpc_method_handler(chat),
        },
    )


async def serve(port: int) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handlers(),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"grpcio listening on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
