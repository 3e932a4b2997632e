"""grpc.health.v1.Health/Check: SERVING, or NOT_SERVING once the server drains.

The messages are two tiny protobufs, encoded by hand so protobuf is not needed:
HealthCheckRequest {string service = 1}, HealthCheckResponse {enum status = 1}.
"""

from __future__ import annotations

from typing import Any

from h2stream.handlers.grpc.wire import GrpcError, Status
from h2stream.handlers.serving import HEALTH

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
SERVING = 1
NOT_SERVING = 2


def _service_name(request: bytes) -> str:
    """Field 1 (length-delimited) of HealthCheckRequest; other fields are skipped."""
    pos = 0
    name = ""
    while pos < len(request):
        key, pos = _varint(request, pos)
        wire = key & 7
        if wire == 0:
            _, pos = _varint(request, pos)
        elif wire == 2:
            length, pos = _varint(request, pos)
            if key >> 3 == 1:
                name = request[pos : pos + length].decode("utf-8", "replace")
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise GrpcError(Status.INVALID_ARGUMENT, "malformed HealthCheckRequest")
    return name


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise GrpcError(Status.INVALID_ARGUMENT, "malformed HealthCheckRequest")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


async def health_check(request: bytes, call: Any) -> bytes:
    name = _service_name(request)
    if name and name not in HEALTH.services:
        raise GrpcError(Status.NOT_FOUND, f"unknown service {name!r}")
    return bytes((0x08, SERVING if HEALTH.serving else NOT_SERVING))
