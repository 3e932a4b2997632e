"""gRPC over the exchange interface (HTTP/2 only): length-prefixed messages, status in
trailers, deadlines, gzip, the health service.

- :mod:`.wire`: status codes, message prefix, grpc-timeout, the request-message reader;
- :mod:`.body`: the reply body that frames many queued messages per turn;
- :mod:`.service`: the method registry and the exchange handler (:class:`GrpcService`);
- :mod:`.health`: ``grpc.health.v1.Health/Check``;
- :mod:`.app`: :class:`GrpcApp`, an App that serves gRPC too (for ``--app``).
"""

from h2stream.handlers.grpc.app import GrpcApp
from h2stream.handlers.grpc.health import HEALTH
from h2stream.handlers.grpc.service import Call, GrpcService
from h2stream.handlers.grpc.wire import GrpcError, Status

__all__ = ["HEALTH", "Call", "GrpcApp", "GrpcError", "GrpcService", "Status"]
