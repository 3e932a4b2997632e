"""An :class:`~h2stream.handlers.app.App` that also serves gRPC: what ``--app`` loads.

gRPC requests (``content-type: application/grpc...``) go to :attr:`GrpcApp.grpc`, everything
else to the App's routes and its fallback, so one server answers both on one port.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from h2stream.body.encoding import EncodingPolicy
from h2stream.config import Config
from h2stream.core.exchange import Exchange, Handler
from h2stream.handlers.app import App
from h2stream.handlers.grpc.service import GrpcService


@dataclass
class GrpcApp(App):
    """``app.grpc.unary("/pkg.Svc/Method")`` and friends register gRPC methods."""

    grpc: GrpcService = field(default_factory=GrpcService)

    def __call__(self, exchange: Exchange) -> None:
        if self.grpc.is_grpc(exchange):
            self.grpc.serve(exchange)
        else:
            App.__call__(self, exchange)

    def bind(
        self,
        config: Config,
        fallback: Handler | None = None,
        policy: EncodingPolicy | None = None,
    ) -> GrpcApp:
        App.bind(self, config, fallback, policy)
        self.grpc.bind(config)
        return self

    @property
    def tasks(self) -> frozenset[asyncio.Task[None]]:
        return frozenset(self._tasks) | self.grpc.tasks
