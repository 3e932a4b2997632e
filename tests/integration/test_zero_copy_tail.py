"""The rest of a zero-copy DATA frame that the socket could not take follows by sendfile as
the socket drains (io/sink.py ``_send_tail``), not copied into the transport. Shown here: the
share of a body sent by sendfile with 1 MiB frames, the bytes intact over h2c and HTTP/1.1,
and a peer that stops reading mid-tail still cut off by ``--send-timeout``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.attacks import MIB, Footprint, served_during, start
from support.clients import RawConnection, RawH2Client
from support.curl import curl_fetch
from support.frames import headers, request_block, settings
from support.h2load import assert_all_succeeded, h2load
from support.metrics import scrape

BODY_BYTES = "h2stream_response_body_bytes_total"
MAX_FRAME_SIZE = 0x5
INITIAL_WINDOW_SIZE = 0x4


def _by_mode(metrics: Any) -> dict[str, float]:
    return scrape(metrics.base).by_label(BODY_BYTES, "mode")


def test_large_frames_leave_by_sendfile(
    server_factory: Callable[..., Any], files_root: Path
) -> None:
    server, metrics = start(server_factory)
    before = _by_mode(metrics)
    run = h2load(f"{server.url}/f256m.bin", "-n", "2", "-c", "1", "-f", "1048576", timeout=120)
    assert_all_succeeded(run, 2)
    after = _by_mode(metrics)
    by_sendfile = after.get("sendfile", 0) - before.get("sendfile", 0)
    # Only each body's last frame is copied (it carries END_STREAM): 2 MiB of 512 MiB.
    assert by_sendfile >= 0.95 * (512 * MIB), (before, after)


def test_large_frames_arrive_intact_on_both_protocols(
    server_factory: Callable[..., Any], files_root: Path
) -> None:
    server, _ = start(server_factory)
    expected = hashlib.sha256((files_root / "f256m.bin").read_bytes()).hexdigest()
    for options in (("--http2-prior-knowledge",), ("--http1.1",)):
        fetched, code, _ = curl_fetch(f"{server.url}/f256m.bin", *options, "--limit-rate", "2G")
        assert code == "200" and fetched.sha256 == expected, options


def test_a_peer_that_stops_reading_mid_tail_is_cut_off(
    server_factory: Callable[..., Any], files_root: Path
) -> None:
    """1 MiB frames and windows wide open, the socket never read: some frame's tail waits for
    a drain that never comes; the stalled output is still seen, and after --send-timeout the
    connection is aborted."""
    server, metrics = start(server_factory, "--send-timeout", "1")
    footprint = Footprint(server)
    expected = (files_root / "mib.bin").read_bytes()
    big = settings({INITIAL_WINDOW_SIZE: (1 << 31) - 1, MAX_FRAME_SIZE: 1 << 20})
    conn = RawConnection(server.port, initial=big, connection_window=(1 << 31) - 1, rcvbuf=4096)
    try:
        conn.send(headers(1, request_block("/f256m.bin")))
        served_during(server.port, "/mib.bin", expected)
        assert metrics.wait_for("stalled_connection", 1, timeout=15) >= 1
        conn.until(lambda: conn.closed, 15)
        assert conn.closed
    finally:
        conn.close()
    footprint.assert_bounded()


def test_a_reset_mid_tail_keeps_the_connection_framed(
    server_factory: Callable[..., Any], files_root: Path
) -> None:
    """A stream reset while its frame's tail is still going: the tail completes (the frame
    must), then the connection carries on; the next response on it arrives intact."""
    server, _ = start(server_factory)
    expected = (files_root / "mib.bin").read_bytes()
    for _ in range(3):
        _reset_mid_body_then_fetch(server.port, expected)


def _reset_mid_body_then_fetch(port: int, expected: bytes) -> None:
    client = RawH2Client(
        port,
        settings={INITIAL_WINDOW_SIZE: (1 << 31) - 1, MAX_FRAME_SIZE: 1 << 20},
        connection_window=(1 << 31) - 1,
    )
    try:
        big = client.request("/f256m.bin")
        assert client.until(lambda: len(client.responses[big].body) > 4 * MIB)
        client.conn.reset_stream(big)
        client.flush()
        small = client.request("/mib.bin")
        assert client.until(lambda: client.responses[small].ended, 30)
        assert bytes(client.responses[small].body) == expected
    finally:
        client.close()
