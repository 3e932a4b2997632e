"""Too many connections: ``--max-connections`` and the per-worker fd budget refuse new
connections gracefully (our SETTINGS, then GOAWAY(NO_ERROR) with last stream 0, then close)
instead of failing on EMFILE; what is already open keeps being served."""

from __future__ import annotations

import resource
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.attacks import Footprint, start
from support.clients import RawConnection, RawH2Client, fetch
from support.frames import (
    GOAWAY,
    HEADERS,
    NO_ERROR,
    REFUSED_STREAM,
    SETTINGS,
    headers,
    request_block,
)
from support.metrics import LimitEvents, metrics_url
from support.servers import ServerProcess


def _assert_refused(conn: RawConnection) -> None:
    assert conn.wait_closed(10), "a connection over the limit was kept"
    kinds = [f.kind for f in conn.frames]
    assert kinds[:2] == [SETTINGS, GOAWAY], kinds
    goaway = conn.goaway
    assert goaway is not None
    assert goaway.error_code == NO_ERROR and goaway.last_stream_id == 0
    assert goaway.payload[8:] == b"connection limit"


def test_max_connections_refuses_gracefully(
    server_factory: Callable[..., Any], files_root: Path
) -> None:
    limit = 20
    server, metrics = start(server_factory, "--max-connections", str(limit))
    footprint = Footprint(server)
    expected = (files_root / "mib.bin").read_bytes()
    good = RawH2Client(server.port, auto_ack=True, connection_window=1 << 30)
    holders = [RawConnection(server.port) for _ in range(limit - 1)]
    extra: list[RawConnection] = []
    try:
        for holder in holders:  # all accepted (they get the server's preface)
            assert holder.until(lambda h=holder: bool(h.frames)), "a connection under the limit"
        for _ in range(10):
            extra.append(RawConnection(server.port))
        for conn in extra:
            _assert_refused(conn)
        # (c) the client that was already connected is served while the limit holds.
        for _ in range(3):
            sid = good.request("/mib.bin")
            assert good.until(lambda s=sid: good.responses[s].ended)
            assert bytes(good.responses[sid].body) == expected
    finally:
        good.close()
        for conn in holders + extra:
            conn.close()
    assert metrics.wait_for("max_connections", 10) >= 10
    # Once the holders are gone, new connections are accepted again.
    assert fetch(server.port, "/mib.bin") == expected
    footprint.assert_bounded()


def fd_limited_server(root: Path, limit: int, *args: str) -> ServerProcess:
    """The server CLI as a child whose RLIMIT_NOFILE (soft and hard) is ``limit``."""

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return ServerProcess(root, *args, preexec_fn=lower)


def test_fd_budget_instead_of_emfile(files_root: Path) -> None:
    """With RLIMIT_NOFILE 256 the automatic budget is (256 - 64) / 4 = 48 connections and 96
    open streams. Sixty connections that each start four held downloads: the surplus
    connections are refused with GOAWAY, the surplus streams with REFUSED_STREAM, nothing
    meets EMFILE (libuv would accept and drop connections unanswered), and all comes back."""
    server = fd_limited_server(files_root, 256, "--metrics-bind", "127.0.0.1:0")
    try:
        _fd_budget(server, LimitEvents(metrics_url(server)), files_root)
    finally:
        server.stop()


def _fd_budget(server: ServerProcess, metrics: LimitEvents, files_root: Path) -> None:
    fetch(server.port, "/hello.txt")
    footprint = Footprint(server)
    expected = (files_root / "mib.bin").read_bytes()
    block = request_block("/f100m.bin")
    conns = [RawConnection(server.port, connection_window=1 << 30) for _ in range(60)]
    try:
        for conn in conns:
            conn.send(b"".join(headers(2 * i + 1, block) for i in range(4)))
        for conn in conns:
            assert conn.until(lambda c=conn: c.closed or len(c.frames) >= 3, 10)
        refused = [c for c in conns if c.goaway is not None]
        served = [c for c in conns if c.goaway is None]
        assert len(served) == 48, f"{len(served)} accepted, expected the budget of 48"
        for conn in refused:
            _assert_refused(conn)
        answered = refused_streams = 0
        for conn in served:
            for sid in (1, 3, 5, 7):
                assert conn.until(lambda c=conn, s=sid: HEADERS in c.kinds(s) or s in c.resets())
                if sid in conn.resets():
                    assert conn.resets()[sid] == REFUSED_STREAM
                    refused_streams += 1
                else:
                    answered += 1
        # 192 fds for connections and streams: 2 x 48 for the sockets, 96 for streams' files.
        assert (answered, refused_streams) == (96, 96)
        assert metrics.wait_for("max_connections", 12) >= 12
        assert metrics.wait_for("fd_budget", 96) >= 96
    finally:
        for conn in conns:
            conn.close()
    footprint.assert_bounded()
    assert fetch(server.port, "/mib.bin") == expected
    crashes = [line for line in server.stderr_lines if "Traceback" in line or "EMFILE" in line]
    assert not crashes, "".join(server.stderr_lines[-30:])
