"""The server's life under real clients: graceful SIGTERM, stalled and vanishing clients,
descriptors and memory.

Each test starts its own server process (``server_factory``) so its fd count and RSS belong
to that test alone.
"""

from __future__ import annotations

import gc
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from typing import Any

import h2.events
import h2.settings
import pytest
from support.clients import (
    RawH2Client,
    Response,
    abort,
    connection_refused,
    read_until_closed,
    request,
)
from support.curl import curl_download
from support.files import SIZES
from support.frames import GOAWAY, parse_frames
from support.polling import steady, wait_until
from support.servers import ServerProcess

from h2stream.runtime.memory import IDLE_DELAY

BIG = "f256m.bin"
MAX_WINDOW = 2**31 - 1
LARGE_WINDOWS = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: MAX_WINDOW}


def fetch_small(server: ServerProcess, *, tls: bool = False) -> Response:
    """The server still serves: a small file on a fresh connection."""
    response = request(server.port, "/hello.txt", tls=tls, timeout=20)
    assert response.status == 200
    assert bytes(response.body) == b"hello, h2stream\n"
    return response


def assert_no_internal_errors(server: ServerProcess) -> None:
    """A client going away is ordinary: it must not be logged as a crash."""
    tracebacks = [line for line in server.stderr_lines if "Traceback" in line or "Error:" in line]
    assert not tracebacks, (
        f"client disconnects logged as internal errors ({len(tracebacks)} lines), first: "
        + "".join(server.stderr_lines[:40])
    )


# --------------------------------------------------------------------------- SIGTERM


def read_frames(sock: socket.socket, timeout: float) -> tuple[list[tuple[int, int, bytes]], bool]:
    """Raw frames (type, stream id, payload) until EOF or ``timeout``; and whether EOF came."""
    result = read_until_closed(sock, timeout)
    frames = parse_frames(result.received, whole=False)
    return [(f.kind, f.stream_id, f.payload) for f in frames], result.outcome != "timeout"


def test_sigterm_lets_a_download_finish(
    server_factory: Callable[..., ServerProcess], digests: dict[str, str]
) -> None:
    server = server_factory("--graceful-timeout", "20")
    curl = curl_download(f"{server.url}/{BIG}", "--http2-prior-knowledge", "--limit-rate", "100M")
    try:
        assert curl.progress.wait(30), "the download did not start"
        server.signal(signal.SIGTERM)
        # The listener closes at once; the download in flight goes on.
        deadline = time.monotonic() + 5
        refused = connection_refused(server.port)
        while not refused and time.monotonic() < deadline:
            time.sleep(0.05)
            refused = connection_refused(server.port)
        assert refused, "new connections are still accepted after SIGTERM"
        in_flight_when_refused = curl.proc.poll() is None
        code, stderr = curl.finish()
    finally:
        if curl.proc.poll() is None:
            curl.proc.kill()
    assert code == 0, stderr
    assert curl.size == SIZES[BIG]
    assert curl.digest.hexdigest() == digests[BIG]
    assert in_flight_when_refused, "the download ended before the listener closed"
    assert server.wait(30) == 0
    assert_no_internal_errors(server)


@pytest.mark.parametrize("stall", ["window", "tcp"])
def test_sigterm_with_stalled_client_exits_after_graceful_timeout(
    server_factory: Callable[..., ServerProcess], stall: str
) -> None:
    """A client that never opens its window (or never reads its socket) cannot hold the server
    past --graceful-timeout."""
    server = server_factory("--graceful-timeout", "1")
    if stall == "window":
        client = RawH2Client(server.port)
    else:
        client = RawH2Client(server.port, settings=LARGE_WINDOWS, connection_window=MAX_WINDOW)
    try:
        stream_id = client.request(f"/{BIG}")
        response = client.responses[stream_id]
        if stall == "window":
            assert client.until(lambda: len(response.body) >= 65535, timeout=10)
            assert client.quiet_for(0.3) == 0, "sent beyond the window"
        else:
            # Let the server fill the socket buffers, and never read again.
            time.sleep(1.0)
        server.signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            code = server.wait(1 + 8)
        except subprocess.TimeoutExpired:
            pytest.fail(f"server still running {time.monotonic() - started:.1f} s after SIGTERM")
        assert code == 0
        if stall == "window":
            # It said goodbye first: GOAWAY(NO_ERROR), then the close. Read raw: our h2
            # refuses every frame after a GOAWAY (RFC 9113 section 6.8 allows a PING and a
            # second GOAWAY to follow the first).
            frames, closed = read_frames(client.sock, timeout=5)
            assert closed, "connection still open after the server exited"
            goaways = [payload for kind, _, payload in frames if kind == GOAWAY]
            assert goaways, f"no GOAWAY before the close: {[kind for kind, _, _ in frames]}"
            assert int.from_bytes(goaways[0][4:8], "big") == 0, "first GOAWAY is not NO_ERROR"
            for payload in goaways:
                # Our stream was taken on: no GOAWAY may call it unprocessed.
                assert int.from_bytes(payload[:4], "big") & 0x7FFFFFFF >= stream_id
    finally:
        client.close()


# --------------------------------------------------------------------------- disconnects


def _aborted_download(server: ServerProcess, index: int, *, tls: bool = False) -> None:
    """One download of the 256 MiB file, abandoned in one of several ways."""
    mode = index % 5
    large = mode in (1, 2)
    client = RawH2Client(
        server.port,
        tls=tls,
        settings=LARGE_WINDOWS if large else None,
        connection_window=MAX_WINDOW if large else None,
    )
    try:
        stream_id = client.request(f"/{BIG}")
        response = client.responses[stream_id]
        if mode == 3:
            return  # gone before the response arrives
        want = (1 << 20) if large else 1
        assert client.until(lambda: len(response.body) >= want, timeout=10), "no body arrived"
        if mode == 4:
            # A polite client: RST_STREAM(CANCEL), then away.
            client.conn.reset_stream(stream_id, 8)
            client.flush()
    finally:
        abort(client.sock, rst=index % 2 == 0)


def test_aborted_downloads_leave_no_fd_open(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory()
    fetch_small(server)
    baseline = steady(server.fd_count)
    for index in range(200):
        _aborted_download(server, index)
    after = wait_until(server.fd_count, 10, until=lambda fds: fds <= baseline)
    assert after <= baseline, f"{after - baseline} fds left open after 200 aborted downloads"
    fetch_small(server)
    assert wait_until(server.fd_count, 5, until=lambda fds: fds <= baseline) <= baseline
    assert server.proc.poll() is None
    assert_no_internal_errors(server)


def test_aborted_tls_downloads_leave_no_fd_open(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory("--self-signed")
    fetch_small(server, tls=True)
    baseline = steady(server.fd_count)
    for index in range(40):
        _aborted_download(server, index, tls=True)
    after = wait_until(server.fd_count, 10, until=lambda fds: fds <= baseline)
    assert after <= baseline, f"{after - baseline} fds left open after 40 aborted TLS downloads"
    fetch_small(server, tls=True)
    assert_no_internal_errors(server)


def test_curl_killed_mid_download(server_factory: Callable[..., ServerProcess]) -> None:
    """A real client killed mid-body, a few times over: nothing stays open, nothing breaks."""
    server = server_factory()
    fetch_small(server)
    baseline = steady(server.fd_count)
    for _ in range(5):
        curl = curl_download(f"{server.url}/{BIG}", "--http2-prior-knowledge")
        assert curl.progress.wait(30)
        curl.proc.kill()
        curl.finish()
    assert wait_until(server.fd_count, 10, until=lambda fds: fds <= baseline) <= baseline
    fetch_small(server)
    assert_no_internal_errors(server)


# --------------------------------------------------------------------------- memory

MEMORY_STREAMS = 200
MEMORY_BOUND = 32 << 20


def _open_streams(client: RawH2Client, count: int, path: str) -> list[int]:
    """``count`` requests in one write, so the server reads them all at once."""
    ids = []
    scheme = b"https" if client.sock.__class__.__name__ == "SSLSocket" else b"http"
    for _ in range(count):
        stream_id = client.conn.get_next_available_stream_id()
        client.conn.send_headers(
            stream_id,
            [
                (b":method", b"GET"),
                (b":scheme", scheme),
                (b":authority", b"localhost"),
                (b":path", path.encode()),
            ],
            end_stream=True,
        )
        client.responses[stream_id] = Response(stream_id)
        ids.append(stream_id)
    client.flush()
    return ids


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_memory_flat_with_200_unread_streams(
    server_factory: Callable[..., ServerProcess], tls: bool
) -> None:
    args = ["--max-concurrent-streams", "256"] + (["--self-signed"] if tls else [])
    server = server_factory(*args)
    # Warm up what a first request allocates (imports, caches, buffers).
    for _ in range(3):
        fetch_small(server, tls=tls)
    warm = RawH2Client(server.port, tls=tls, auto_ack=True)
    try:
        ids = _open_streams(warm, 20, "/mib.bin")
        assert warm.until(lambda: all(warm.responses[i].ended for i in ids), timeout=60)
    finally:
        warm.close()
    baseline_fds = steady(server.fd_count)
    baseline_rss = server.rss()

    client = RawH2Client(server.port, tls=tls, settings=LARGE_WINDOWS, connection_window=MAX_WINDOW)
    try:
        # The server's SETTINGS first, so our h2 knows it may open 200 streams.
        assert client.until(
            lambda: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in client.events),
            timeout=10,
        )
        ids = _open_streams(client, MEMORY_STREAMS, f"/{BIG}")
        # Read nothing for a while: windows are open, so only TCP stops the server.
        time.sleep(2.0)
        grown = server.rss() - baseline_rss
        assert grown <= MEMORY_BOUND, (
            f"RSS grew {grown / 2**20:.1f} MiB with {MEMORY_STREAMS} unread streams"
        )
        # All 200 were really taken on: their HEADERS are answered (they precede the DATA).
        assert client.until(
            lambda: all(client.responses[i].status == 200 for i in ids), timeout=30
        ), f"only {sum(client.responses[i].status == 200 for i in ids)} of 200 answered"
        assert server.rss() - baseline_rss <= MEMORY_BOUND
    finally:
        client.close()
    assert wait_until(server.fd_count, 10, until=lambda fds: fds <= baseline_fds) <= baseline_fds
    fetch_small(server, tls=tls)
    assert server.rss() - baseline_rss <= MEMORY_BOUND


def test_heap_is_trimmed_once_the_last_connection_has_gone(
    inprocess_factory: Callable[..., Any],
) -> None:
    """memory.IdleTrim: nothing while a connection is open; one malloc_trim a moment after
    the last one closed."""
    server = inprocess_factory()
    trim = server.server.idle_trim
    first, second = RawH2Client(server.port), RawH2Client(server.port)
    try:
        sid = first.request("/kib.bin")
        assert first.until(lambda: first.responses[sid].ended)
        first.close()
        time.sleep(IDLE_DELAY + 0.5)
        assert trim.trims == 0, "trimmed while a connection was still open"
    finally:
        second.close()
    deadline = time.monotonic() + IDLE_DELAY + 5
    while trim.trims == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert trim.trims == 1


def test_a_closed_tls_connection_frees_its_ssl_state_at_once(
    inprocess_factory: Callable[..., Any],
) -> None:
    """connection_lost cuts the transport loose from the session's reference cycles, so
    uvloop's SSL layer (its 256 KiB read buffer, OpenSSL's state) goes with the connection,
    not at some later full garbage collection."""
    server = inprocess_factory(self_signed=True)

    def server_ssl_objects() -> int:
        # The server's TLS runs on ssl.SSLObject (memory BIOs); the client's is an SSLSocket.
        return sum(isinstance(obj, ssl.SSLObject) for obj in gc.get_objects())

    # Another connection stays open, so the idle trim (and its gc.collect) cannot run.
    keeper = RawH2Client(server.port, tls=True)
    kept = keeper.request("/kib.bin")
    assert keeper.until(lambda: keeper.responses[kept].ended)
    gc.collect()
    gc.disable()
    try:
        before = server_ssl_objects()
        client = RawH2Client(server.port, tls=True)
        sid = client.request("/kib.bin")
        assert client.until(lambda: client.responses[sid].ended)
        assert server_ssl_objects() == before + 1
        client.close()
        deadline = time.monotonic() + 5
        while server_ssl_objects() > before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server_ssl_objects() == before
    finally:
        gc.enable()
        keeper.close()
