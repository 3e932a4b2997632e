"""Every server configuration the harness knows, in the order the table lists them."""

from __future__ import annotations

from bench.asgi_servers import ASGI_SERVERS
from bench.scenarios import H1
from bench.servers.base import H2C, TLS, Context, Launch, Server
from bench.servers.caddy import Caddy
from bench.servers.h2o import H2O
from bench.servers.h2stream import (
    H2Stream,
    H2StreamBaseline,
    H2StreamMemory,
    H2StreamNoSendfile,
)
from bench.servers.nginx import Nginx, NginxSendfile
from bench.servers.python_peers import (
    Granian,
    GranianMemory,
    Hypercorn,
    HypercornMemory,
    UvicornHttptools,
    UvicornHttptoolsMemory,
    UvicornZttp,
    UvicornZttpMemory,
)

ALL: tuple[Server, ...] = (
    H2Stream(),
    H2StreamNoSendfile(),
    H2StreamMemory(),
    H2StreamBaseline(),
    Nginx(),
    NginxSendfile(),
    H2O(),
    Caddy(),
    Hypercorn(),
    HypercornMemory(),
    Granian(),
    GranianMemory(),
    UvicornZttp(),
    UvicornZttpMemory(),
    UvicornHttptools(),
    UvicornHttptoolsMemory(),
    # The ASGI section: h2stream --app beside the ASGI peers on the same app files.
    *ASGI_SERVERS,
)
BY_NAME = {s.name: s for s in ALL}

__all__ = ["ALL", "BY_NAME", "H1", "H2C", "TLS", "Context", "Launch", "Server", "select"]


def select(names: str | None) -> list[Server]:
    if not names:
        return list(ALL)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in BY_NAME]
    if unknown:
        raise ValueError(f"unknown server(s) {unknown}; known: {', '.join(BY_NAME)}")
    return [BY_NAME[n] for n in wanted]
