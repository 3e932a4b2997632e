"""The process's serving status: SERVING until the server starts draining.

gRPC's health service (grpc/health.py) reports it; it lives apart from the gRPC package so
that the server can set it without importing gRPC into a worker that serves none.
"""

from __future__ import annotations


class HealthState:
    """The server marks it NOT_SERVING as it starts draining. ``services``: names (besides
    "", the whole server) that the health check knows."""

    def __init__(self) -> None:
        self.serving = True
        self.services: set[str] = set()

    def set_serving(self, serving: bool) -> None:
        self.serving = serving


HEALTH = HealthState()
