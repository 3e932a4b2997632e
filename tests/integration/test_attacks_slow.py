"""Slow peers: slowloris before and inside HTTP/2, idle connections, and zero-window and
slow-read holds (CVE-2019-9511/9517 family). The timeouts are set to one second here so the
module stays quick; the sweeper checks four times per timeout.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.attacks import MIB, Footprint, served_during, start
from support.clients import RawConnection
from support.frames import (
    CANCEL,
    DATA,
    ENHANCE_YOUR_CALM,
    NO_ERROR,
    PREFACE,
    continuation,
    headers,
    ping,
    request_block,
    settings,
)
from support.polling import wait_until

FAST = ("--preface-timeout", "1", "--header-timeout", "1", "--idle-timeout", "1")
SLOWLORIS = 40  # connections held open by each slowloris round


def test_slowloris_before_the_preface(server_factory: Callable[..., Any], files_root: Path) -> None:
    server, metrics = start(server_factory, *FAST)
    footprint = Footprint(server)
    expected = (files_root / "mib.bin").read_bytes()
    socks = []
    try:
        for i in range(SLOWLORIS):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            # Half the preface, or half an h2c Upgrade request: never the rest.
            sock.sendall(PREFACE[:10] if i % 2 else b"GET / HTTP/1.1\r\nHost: x\r\n")
            socks.append(sock)
        served_during(server.port, "/mib.bin", expected)  # (c) while they are held open
        deadline = time.monotonic() + 10
        for sock in socks:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            assert sock.recv(1024) == b"", "a slow connection was not closed"
    finally:
        for sock in socks:
            sock.close()
    assert metrics.wait_for("preface_timeout", SLOWLORIS) >= SLOWLORIS
    footprint.assert_bounded()


def test_slowloris_during_the_tls_handshake(server_factory: Callable[..., Any]) -> None:
    server = server_factory("--self-signed", "--preface-timeout", "1")
    footprint = Footprint(server)
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(10)]
    try:
        # A client that starts a handshake normally is served meanwhile.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["h2"])
        with context.wrap_socket(socket.create_connection(("127.0.0.1", server.port))) as good:
            assert good.selected_alpn_protocol() == "h2"
        for sock in socks:  # the silent ones: no ClientHello ever
            sock.settimeout(10)
            assert sock.recv(1024) == b""
    finally:
        for sock in socks:
            sock.close()
    footprint.assert_bounded()


def test_header_block_must_finish_in_time(
    server_factory: Callable[..., Any], files_root: Path
) -> None:
    server, metrics = start(server_factory, *FAST)
    footprint = Footprint(server)
    expected = (files_root / "mib.bin").read_bytes()
    block = request_block("/hello.txt")
    # Two shapes: a header block dribbled out one empty CONTINUATION at a time (each frame
    # is complete, the block never is), and a HEADERS frame cut off in the middle.
    # (Neither acknowledges the server's SETTINGS: that frame would end the block.)
    dribble = RawConnection(
        server.port, initial=headers(1, block, end_headers=False), ack_settings=False
    )
    partial = RawConnection(
        server.port, initial=headers(1, block)[: 9 + len(block) // 2], ack_settings=False
    )
    try:
        served_during(server.port, "/mib.bin", expected)
        deadline = time.monotonic() + 10
        while dribble.goaway is None and time.monotonic() < deadline:
            dribble.send(continuation(1, b""))
            dribble.read_for(0.3)
        assert partial.until(lambda: partial.goaway is not None, 10)
        for conn in (dribble, partial):
            assert conn.goaway is not None and conn.goaway.error_code == ENHANCE_YOUR_CALM
            assert conn.wait_closed(10)
    finally:
        dribble.close()
        partial.close()
    assert metrics.wait_for("header_timeout", 2) >= 2
    footprint.assert_bounded()


def test_idle_connection_gets_goaway_despite_pings(
    server_factory: Callable[..., Any], files_root: Path
) -> None:
    server, metrics = start(server_factory, *FAST)
    footprint = Footprint(server)
    conn = RawConnection(server.port, initial=headers(1, request_block("/hello.txt")))
    try:
        expected = (files_root / "hello.txt").read_bytes()
        assert conn.until(lambda: conn.body(1) == expected)
        # PINGs are not activity: the connection is closed as idle all the same.
        deadline = time.monotonic() + 10
        while conn.goaway is None and time.monotonic() < deadline:
            conn.send(ping())
            conn.read_for(0.2)
        assert conn.goaway is not None
        assert conn.goaway.error_code == NO_ERROR and conn.goaway.last_stream_id == 1
        assert conn.wait_closed(10)
    finally:
        conn.close()
    assert metrics.wait_for("idle_timeout", 1) >= 1
    footprint.assert_bounded()


def test_zero_window_hold_resets_the_stream(
    server_factory: Callable[..., Any], files_root: Path
) -> None:
    """A stream whose window stays at zero past --send-timeout is reset with CANCEL (the peer
    broke no rule: the server gives the response up and frees its file); the connection and
    its other streams go on."""
    server, metrics = start(server_factory, "--send-timeout", "1")
    footprint = Footprint(server)
    expected = (files_root / "mib.bin").read_bytes()
    # Connection window wide open, stream window the default 64 KiB, never replenished.
    conn = RawConnection(server.port, connection_window=1 << 30)
    try:
        conn.send(headers(1, request_block("/f100m.bin")))
        assert conn.until(lambda: len(conn.body(1)) == 65535)
        served_during(server.port, "/mib.bin", expected)  # (c) during the hold
        assert conn.until(lambda: 1 in conn.resets(), 10), "the held stream was not reset"
        assert conn.resets()[1] == CANCEL
        conn.send(headers(3, request_block("/hello.txt")))
        assert conn.until(lambda: DATA in conn.kinds(3)), "the connection did not go on"
        assert conn.goaway is None
    finally:
        conn.close()
    assert metrics.wait_for("send_timeout", 1) >= 1
    footprint.assert_bounded()


def test_connection_window_hold_closes_the_connection(
    server_factory: Callable[..., Any], files_root: Path
) -> None:
    """Stream windows open, the connection window exhausted and never reopened."""
    server, metrics = start(server_factory, "--send-timeout", "1")
    footprint = Footprint(server)
    expected = (files_root / "mib.bin").read_bytes()
    conn = RawConnection(server.port, initial=settings({0x4: 1 << 30}))  # INITIAL_WINDOW_SIZE
    try:
        conn.send(headers(1, request_block("/f100m.bin")))
        assert conn.until(lambda: len(conn.body(1)) == 65535)
        served_during(server.port, "/mib.bin", expected)
        assert conn.until(lambda: conn.goaway is not None, 10), "no GOAWAY for the hold"
        assert conn.goaway is not None and conn.goaway.error_code == ENHANCE_YOUR_CALM
        assert conn.wait_closed(10)
    finally:
        conn.close()
    assert metrics.wait_for("stalled_connection", 1) >= 1
    footprint.assert_bounded()


def test_slow_read_hold_is_aborted(server_factory: Callable[..., Any], files_root: Path) -> None:
    """Windows wide open, the socket never read: the server's output stops moving and after
    --send-timeout the connection is aborted (a GOAWAY could not be delivered)."""
    server, metrics = start(server_factory, "--send-timeout", "1")
    footprint = Footprint(server)
    expected = (files_root / "mib.bin").read_bytes()
    big = settings({0x4: (1 << 31) - 1})
    conn = RawConnection(server.port, initial=big, connection_window=(1 << 31) - 1, rcvbuf=4096)
    try:
        conn.send(headers(1, request_block("/f256m.bin")))
        served_during(server.port, "/mib.bin", expected)
        assert metrics.wait_for("stalled_connection", 1, timeout=15) >= 1
        # What the kernel buffered arrives, then the reset: far less than the body.
        conn.until(lambda: conn.closed, 15)
        assert conn.closed and len(conn.body(1)) < 64 * MIB
    finally:
        conn.close()
    footprint.assert_bounded()


BUFFER_KINDS = ("connection_buffer", "stalled_connection")


def test_connection_buffer_cap(server_factory: Callable[..., Any], files_root: Path) -> None:
    """On the copy path a turn hands the transport up to a run of 1 MiB at once, so a cap
    below what the server itself queues is raised to that (a reader that reads is never cut
    off, issue 19); a peer that does not read is cut off when its output stops moving."""
    server, metrics = start(
        server_factory, "--no-sendfile", "--max-connection-buffer", "64K", "--send-timeout", "2"
    )
    footprint = Footprint(server)
    expected = (files_root / "mib.bin").read_bytes()
    big = settings({0x4: (1 << 31) - 1})
    conn = RawConnection(server.port, initial=big, connection_window=(1 << 31) - 1, rcvbuf=4096)
    try:
        conn.send(headers(1, request_block("/f256m.bin")))
        assert wait_until(
            lambda: sum(metrics.limit_events().get(k, 0) for k in BUFFER_KINDS), 15, 0.1
        )
        conn.until(lambda: conn.closed, 15)
        assert conn.closed
    finally:
        conn.close()
    # The cap is per connection: a client that reads is never near it.
    served_during(server.port, "/mib.bin", expected)
    footprint.assert_bounded()
