"""Flow control is backpressure: what the peer's windows allow goes out, and not a byte more.

Every test drives a real server (a child process, or the in-process server when the byte
counters in ``h2stream.core.stats.STATS`` are needed) over loopback with the raw h2 client, which
never returns window credit unless the test says so. The client's own h2 state machine is a
second referee: a DATA frame beyond the credit it granted raises FlowControlError in the client.

No timing assertions: ``quiet_for`` is a bounded wait that must see *no* bytes, and every other
wait has a deadline.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h2.errors
import h2.events
import h2.settings
import pytest
from support.clients import RawH2Client
from support.commands import require
from support.files import sha256_file
from support.metrics import metrics_url
from support.polling import steady, wait_until

from h2stream.core.stats import STATS

WINDOW = 65535  # RFC 9113 default initial window, stream and connection
MAX_WINDOW = 2**31 - 1
MIB = 1 << 20
BIG = 256 * MIB
INITIAL_WINDOW_SIZE = h2.settings.SettingCodes.INITIAL_WINDOW_SIZE
INTERNAL_ERROR = 2

# Long enough for a server that was going to overshoot to have done so (it would answer the
# update within milliseconds on loopback), short enough to keep the module quick.
QUIET = 0.3

TRANSPORTS = ["h2c", "h2c-no-sendfile", "tls"]


class StreamingClient(RawH2Client):
    """RawH2Client that hashes chosen streams' bodies instead of keeping them.

    A 256 MiB body held in a bytearray (and again in the event log) would make the test
    process the memory problem; hashing keeps the client flat.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.hashers: dict[int, Any] = {}
        self.counts: dict[int, int] = {}
        super().__init__(*args, **kwargs)

    def request_hashed(self, path: str) -> int:
        stream_id = self.request(path)
        self.hashers[stream_id] = hashlib.sha256()
        self.counts[stream_id] = 0
        return stream_id

    def _on_event(self, event: Any) -> None:
        if isinstance(event, h2.events.DataReceived) and event.stream_id in self.hashers:
            self.hashers[event.stream_id].update(event.data)
            self.counts[event.stream_id] += len(event.data)
            if self.auto_ack and event.flow_controlled_length:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            return
        super()._on_event(event)


def body_len(client: RawH2Client, stream_id: int) -> int:
    return len(client.responses[stream_id].body)


def total_received(client: RawH2Client) -> int:
    return sum(len(r.body) for r in client.responses.values())


def expect_more(
    client: RawH2Client, measure: Callable[[], int], n: int, timeout: float = 10
) -> None:
    """Wait until exactly ``n`` more bytes arrived, then check that nothing else follows."""
    before = measure()
    assert client.until(lambda: measure() >= before + n, timeout), (
        f"expected {n} more body bytes, got {measure() - before}"
    )
    client.quiet_for(QUIET)
    assert measure() == before + n, f"expected exactly {n} more, got {measure() - before}"


def until_done(
    client: StreamingClient, condition: Callable[[], bool], stall: float = 10, limit: float = 120
) -> bool:
    """Like ``client.until`` for long downloads: gives up after ``stall`` seconds without a
    byte of progress (a hang fails fast), or after ``limit`` seconds in all."""
    deadline = time.monotonic() + limit

    def progress() -> int:
        return sum(client.counts.values()) + len(client.events)

    seen, last_change = progress(), time.monotonic()
    while not condition():
        now = time.monotonic()
        if now > deadline or now - last_change > stall or client.closed:
            return condition()
        client.receive_once(0.5)
        if progress() != seen:
            seen, last_change = progress(), time.monotonic()
    return True


def stats_body_bytes() -> int:
    return int(STATS.body_bytes_sendfile + STATS.body_bytes_copy)


def big_window_client(port: int, tls: bool = False, window: int = MAX_WINDOW) -> StreamingClient:
    """A client whose windows never bind (and that acks anyway, as real clients do)."""
    return StreamingClient(
        port,
        tls=tls,
        settings={INITIAL_WINDOW_SIZE: window},
        connection_window=window,
        auto_ack=True,
    )


@pytest.fixture(params=TRANSPORTS)
def transport(
    request: pytest.FixtureRequest, server_factory: Callable[..., Any]
) -> tuple[str, int, bool]:
    """(name, port, tls) of a running server for each body path: sendfile, copy, TLS copy."""
    name = request.param
    if name == "h2c":
        return name, request.getfixturevalue("h2c_server").port, False
    if name == "tls":
        return name, request.getfixturevalue("tls_server").port, True
    return name, server_factory("--no-sendfile").port, False


# -- default windows, WINDOW_UPDATE --------------------------------------------------------


def test_default_windows_then_exact_updates(
    transport: tuple[str, int, bool], files_root: Path
) -> None:
    _, port, tls = transport
    expected = (files_root / "mib.bin").read_bytes()
    client = RawH2Client(port, tls=tls)
    try:
        sid = client.request("/mib.bin")
        assert client.until(lambda: body_len(client, sid) >= WINDOW)
        assert client.responses[sid].status == 200
        # The first window, then silence: no reading ahead past the peer's credit.
        assert client.quiet_for(1.0) == 0
        assert body_len(client, sid) == WINDOW

        def measure() -> int:
            return body_len(client, sid)

        for n in (1, 100, 16384, 70000):
            # Both windows are at zero: a stream update alone must not be enough, so each
            # step opens both by exactly n.
            client.open_window(sid, n)
            client.open_window(None, n)
            expect_more(client, measure, n)

        # Stream credit with the connection window at zero: nothing may move...
        client.open_window(sid, 5000)
        assert client.quiet_for(0.5) == 0
        # ...until the connection window opens, and then only the smaller of the two.
        client.open_window(None, 5000)
        expect_more(client, measure, 5000)

        # And the other way round: connection credit alone moves nothing.
        client.open_window(None, 3000)
        assert client.quiet_for(0.5) == 0
        client.open_window(sid, 3000)
        expect_more(client, measure, 3000)

        body = client.responses[sid].body
        assert body == expected[: len(body)]
        assert not client.responses[sid].ended
        assert client.goaway is None and not client.closed
    finally:
        client.close()


def test_settings_initial_window_resumes_blocked_stream(
    transport: tuple[str, int, bool], files_root: Path
) -> None:
    _, port, tls = transport
    expected = (files_root / "mib.bin").read_bytes()
    client = RawH2Client(port, tls=tls)
    try:
        # Plenty of connection credit, so only the stream window binds.
        client.open_window(None, 8 * MIB)
        sid = client.request("/mib.bin")

        def measure() -> int:
            return body_len(client, sid)

        assert client.until(lambda: measure() >= WINDOW)
        assert client.quiet_for(0.5) == 0
        assert measure() == WINDOW

        window_setting = WINDOW
        for delta in (1000, 20000):
            window_setting += delta
            client.conn.update_settings({INITIAL_WINDOW_SIZE: window_setting})
            client.flush()
            expect_more(client, measure, delta)

        # Lowering the setting drives the open stream's window negative (RFC 9113 6.9.2):
        # the server must wait until WINDOW_UPDATEs bring it back above zero.
        shrink = 30000
        window_setting -= shrink
        client.conn.update_settings({INITIAL_WINDOW_SIZE: window_setting})
        client.flush()
        assert client.quiet_for(0.5) == 0
        client.open_window(sid, shrink)  # back to exactly zero: still nothing
        assert client.quiet_for(0.5) == 0
        client.open_window(sid, 10)
        expect_more(client, measure, 10)

        body = client.responses[sid].body
        assert body == expected[: len(body)]
    finally:
        client.close()


def test_many_streams_share_the_connection_window(h2c_server: Any, files_root: Path) -> None:
    expected = (files_root / "mib.bin").read_bytes()
    # Stream windows far larger than the bodies; the connection window (65,535) binds.
    client = RawH2Client(h2c_server.port, settings={INITIAL_WINDOW_SIZE: 16 * MIB})
    try:
        sids = [client.request("/mib.bin") for _ in range(10)]

        def measure() -> int:
            return total_received(client)

        assert client.until(lambda: measure() >= WINDOW)
        assert client.quiet_for(0.5) == 0
        assert measure() == WINDOW

        granted = WINDOW
        for n in (1, 100_000, 3 * MIB):
            client.open_window(None, n)
            expect_more(client, measure, n)
            granted += n
        assert measure() == granted

        for sid in sids:
            body = client.responses[sid].body
            assert body == expected[: len(body)]
            assert not client.responses[sid].ended
            # 3 MiB of credit over 10 streams: the turn-based scheduler gave every one a share.
            assert len(body) > 0, f"stream {sid} got nothing of the shared window"
    finally:
        client.close()


# -- fairness ------------------------------------------------------------------------------


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_small_request_beside_huge_download(
    tls: bool, request: pytest.FixtureRequest, files_root: Path
) -> None:
    server = request.getfixturevalue("tls_server" if tls else "h2c_server")
    small_expected = (files_root / "kib.bin").read_bytes()
    # h2load's default windows (2**30): flow control never binds, so only the scheduler and
    # the I/O loop decide when the small response gets its turn.
    client = big_window_client(server.port, tls=tls, window=2**30)
    try:
        big = client.request_hashed("/f256m.bin")
        # The big body is really flowing before the small request goes out.
        assert until_done(client, lambda: client.counts[big] >= 2 * MIB)
        asked_at = client.counts[big]
        small = client.request("/kib.bin")
        assert until_done(client, lambda: client.responses[small].ended)
        big_at_small_end = client.counts[big]
        response = client.responses[small]
        assert response.status == 200 and response.reset_code is None
        assert bytes(response.body) == small_expected
        # What the big stream got meanwhile is bounded by the socket buffers (loopback
        # autotuning allows tens of MiB) and a write turn, not by its remaining 250+ MiB.
        assert big_at_small_end - asked_at < BIG // 4, (
            f"the 1 KiB response waited for {(big_at_small_end - asked_at) / MIB:.0f} MiB "
            f"of the big body (asked at {asked_at / MIB:.1f} MiB)"
        )
    finally:
        client.close()


def test_small_request_before_huge_download(h2c_server: Any, files_root: Path) -> None:
    client = big_window_client(h2c_server.port, window=2**30)
    try:
        small = client.request("/kib.bin")
        big = client.request_hashed("/f256m.bin")
        assert client.until(lambda: client.responses[small].ended, 10)
        assert bytes(client.responses[small].body) == (files_root / "kib.bin").read_bytes()
        assert client.counts[big] < BIG
    finally:
        client.close()


@pytest.mark.slow
def test_cancel_mid_download_stops_the_stream(
    inprocess_factory: Callable[..., Any], files_root: Path
) -> None:
    """RST_STREAM(CANCEL) from a reading client stops the producer within socket buffers."""
    server = inprocess_factory()
    client = big_window_client(server.port, window=2**30)
    try:
        before = stats_body_bytes()
        big = client.request_hashed("/f256m.bin")
        assert until_done(client, lambda: client.counts[big] >= 2 * MIB)
        client.conn.reset_stream(big, h2.errors.ErrorCodes.CANCEL)
        client.flush()
        cancelled_at = stats_body_bytes() - before

        # Keep reading (the client's h2 drops DATA for the stream it reset), so a server that
        # is still sending is not held back by a full socket instead; stop once it is quiet.
        deadline = time.monotonic() + 30
        previous = -1
        while (sent := stats_body_bytes() - before) != previous and time.monotonic() < deadline:
            previous = sent
            client.quiet_for(0.5)
        assert sent - cancelled_at < BIG // 4, (
            f"{(sent - cancelled_at) / MIB:.0f} MiB sent after the stream was cancelled "
            f"at {cancelled_at / MIB:.1f} MiB"
        )

        # The cancel cost one stream, not the connection.
        assert client.goaway is None and not client.closed
        ok = client.request("/kib.bin")
        assert client.until(lambda: client.responses[ok].ended, 10)
        assert bytes(client.responses[ok].body) == (files_root / "kib.bin").read_bytes()
    finally:
        client.close()


# -- zero-copy accounting ------------------------------------------------------------------


def download_big(client: StreamingClient, digests: dict[str, str]) -> None:
    sid = client.request_hashed("/f256m.bin")
    assert until_done(client, lambda: client.responses[sid].ended), client.counts[sid]
    response = client.responses[sid]
    assert response.status == 200 and response.reset_code is None
    assert client.counts[sid] == BIG
    assert client.hashers[sid].hexdigest() == digests["f256m.bin"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "changes",
    [{"zero_copy_min_frame": 0}, {"sendfile": False}, {"self_signed": True}],
    ids=["h2c-sendfile", "h2c-no-sendfile", "tls"],
)
def test_bytes_per_body_path(
    changes: dict[str, object], inprocess_factory: Callable[..., Any], digests: dict[str, str]
) -> None:
    server = inprocess_factory(**changes)
    tls = bool(changes.get("self_signed"))
    client = big_window_client(server.port, tls=tls)
    try:
        # The in-process server is the only thing touching STATS while this runs.
        sendfile_before, copy_before = STATS.body_bytes_sendfile, STATS.body_bytes_copy
        download_big(client, digests)
        by_sendfile = STATS.body_bytes_sendfile - sendfile_before
        by_copy = STATS.body_bytes_copy - copy_before
    finally:
        client.close()
    # Every body byte was counted once, on exactly one path.
    assert by_sendfile + by_copy == BIG, (by_sendfile, by_copy)
    if "zero_copy_min_frame" in changes:
        assert by_sendfile >= 0.99 * BIG, f"only {by_sendfile / BIG:.2%} by sendfile"
    else:
        assert by_sendfile == 0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("window", "max_frame", "expected"),
    [
        (MAX_WINDOW, 16384, "copy"),
        (65535, 16384, "copy"),
        (MAX_WINDOW, 32768, "sendfile"),
        (65535, 32768, "sendfile"),
    ],
    ids=["16k-frames", "16k-frames-window-bound", "32k-frames", "32k-frames-window-bound"],
)
def test_zero_copy_or_batched_copy_per_run(
    window: int,
    max_frame: int,
    expected: str,
    inprocess_factory: Callable[..., Any],
    digests: dict[str, str],
) -> None:
    """The default policy (README "Zero-copy or copy"): frames under 20 KiB go by the copy
    path (one write per run, or per frame where the window cut the run short), larger ones
    zero-copy. Either way the body is exact."""
    server = inprocess_factory()
    client = StreamingClient(
        server.port,
        settings={INITIAL_WINDOW_SIZE: window, h2.settings.SettingCodes.MAX_FRAME_SIZE: max_frame},
        connection_window=window if window > 65535 else None,
        auto_ack=True,
    )
    try:
        sendfile_before, copy_before = STATS.body_bytes_sendfile, STATS.body_bytes_copy
        download_big(client, digests)
        by_mode = {
            "sendfile": STATS.body_bytes_sendfile - sendfile_before,
            "copy": STATS.body_bytes_copy - copy_before,
        }
    finally:
        client.close()
    assert sum(by_mode.values()) == BIG
    if expected == "copy":
        assert by_mode["sendfile"] == 0, by_mode
    else:
        # Each time the socket fills mid-frame, the rest of that frame goes by copy: on a
        # loaded machine that can be a few percent of a body in 32 KiB frames.
        assert by_mode["sendfile"] >= 0.9 * BIG, by_mode


# -- a file that shrinks mid-body ----------------------------------------------------------


def _write_file(path: Path, size: int) -> bytes:
    block = os.urandom(MIB)
    with open(path, "wb") as out:
        for start in range(0, size, MIB):
            out.write(block[: min(MIB, size - start)])
    return block


@pytest.mark.parametrize("truncate_to", [100 * 1024, 0, WINDOW], ids=["100KiB", "zero", "sent"])
@pytest.mark.parametrize("mode", ["sendfile", "no-sendfile"])
def test_shrinking_file_is_reset_not_ended(
    mode: str, truncate_to: int, tmp_path: Path, server_factory: Callable[..., Any]
) -> None:
    path = tmp_path / "shrinks.bin"
    block = _write_file(path, 64 * MIB)
    (tmp_path / "ok.txt").write_bytes(b"still here\n")
    server = server_factory(*(["--no-sendfile"] if mode == "no-sendfile" else []), root=tmp_path)
    client = RawH2Client(server.port)
    try:
        sid = client.request("/shrinks.bin")
        assert client.until(lambda: body_len(client, sid) >= WINDOW)
        assert client.quiet_for(QUIET) == 0
        assert client.responses[sid].headers[b"content-length"] == str(64 * MIB).encode()

        os.truncate(path, truncate_to)
        client.open_window(None, MAX_WINDOW - WINDOW)
        client.open_window(sid, MAX_WINDOW - WINDOW)
        assert client.until(lambda: client.responses[sid].ended, 10), "stream hung"

        response = client.responses[sid]
        ended_cleanly = any(
            isinstance(e, h2.events.StreamEnded) and e.stream_id == sid for e in client.events
        )
        assert not ended_cleanly, "a short body must not end like a complete one"
        assert response.reset_code == INTERNAL_ERROR
        # What did arrive is the file's real content up to where it now ends (a zero-copy frame
        # caught mid-way may be padded after that, but the reset tells the client to drop it).
        real = min(len(response.body), max(truncate_to, WINDOW))
        assert bytes(response.body[:real]) == block[:real]
        assert len(response.body) < 64 * MIB

        # The reset cost one stream, not the connection.
        ok = client.request("/ok.txt")
        assert client.until(lambda: client.responses[ok].ended, 10)
        assert client.responses[ok].status == 200
        assert client.responses[ok].reset_code is None
        assert bytes(client.responses[ok].body) == b"still here\n"
        assert client.goaway is None and not client.closed
    finally:
        client.close()


# -- a client that stops reading -----------------------------------------------------------


@pytest.mark.slow
def test_stalled_reader_stops_the_producer(
    inprocess_factory: Callable[..., Any], digests: dict[str, str]
) -> None:
    server = inprocess_factory()
    client = big_window_client(server.port)
    try:
        before = stats_body_bytes()
        sid = client.request_hashed("/f256m.bin")
        assert client.until(lambda: client.counts[sid] > 0)
        paused_at = time.monotonic()
        # Not reading: the socket buffers fill and the server must stop, windows or not.
        stalled = steady(stats_body_bytes, 0.5, 10, strict=True) - before
        assert stats_body_bytes() - before == stalled
        assert stalled < 64 * MIB, f"{stalled} bytes produced for a client that reads nothing"
        time.sleep(max(0.0, 2.0 - (time.monotonic() - paused_at)))
        assert stats_body_bytes() - before == stalled

        # Reading again resumes it, with every byte intact.
        assert until_done(client, lambda: client.responses[sid].ended), client.counts[sid]
        assert client.counts[sid] == BIG
        assert client.hashers[sid].hexdigest() == digests["f256m.bin"]
    finally:
        client.close()


@pytest.mark.slow
def test_stalled_reader_keeps_server_memory_flat(
    server_factory: Callable[..., Any], digests: dict[str, str]
) -> None:
    server = server_factory()
    client = big_window_client(server.port)
    try:
        # Warm up so first-request allocations (imports, caches) are not counted as growth.
        warm = client.request("/kib.bin")
        assert client.until(lambda: client.responses[warm].ended)
        rss_before = server.rss()
        sid = client.request_hashed("/f256m.bin")
        assert client.until(lambda: client.counts[sid] > 0)
        time.sleep(2.0)  # not reading
        growth = server.rss() - rss_before
        assert growth < 8 * MIB, f"server RSS grew by {growth / MIB:.1f} MiB while stalled"

        assert until_done(client, lambda: client.responses[sid].ended), client.counts[sid]
        assert client.counts[sid] == BIG
        assert client.hashers[sid].hexdigest() == digests["f256m.bin"]
    finally:
        client.close()


@pytest.mark.slow
def test_many_stalled_streams_keep_server_memory_flat(server_factory: Callable[..., Any]) -> None:
    """200 streams of 256 MiB to clients that read nothing at all (two connections, as the
    server allows 128 concurrent streams each)."""
    server = server_factory()
    warm = RawH2Client(server.port)
    try:
        sid = warm.request("/kib.bin")
        assert warm.until(lambda: warm.responses[sid].ended)
    finally:
        warm.close()
    rss_before = server.rss()
    clients = [big_window_client(server.port) for _ in range(2)]
    try:
        for client in clients:
            for _ in range(100):
                client.request("/f256m.bin")
        time.sleep(2.0)  # nobody reads
        growth = server.rss() - rss_before
        assert growth < 16 * MIB, f"server RSS grew by {growth / MIB:.1f} MiB"
    finally:
        for client in clients:
            client.close()


def test_copy_buffers_shared_between_a_stalled_and_a_fast_connection(
    inprocess_factory: Callable[..., Any], tmp_path: Path
) -> None:
    """The copy path's buffers are shared by the worker's connections (sink.CopyBuffers): one
    whose socket is full keeps its buffer while another connection downloads through the rest;
    neither body may be touched by the other's runs. (Random bytes throughout: a pattern that
    repeats could hide a buffer overwritten with the same bytes from elsewhere.)"""
    size = 32 * MIB
    data = os.urandom(size)
    (tmp_path / "random.bin").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    server = inprocess_factory(root=str(tmp_path))
    stalled = big_window_client(server.port)
    fast = big_window_client(server.port)
    try:
        sid = stalled.request_hashed("/random.bin")
        # Read a little, then stop: the socket fills and the transport keeps the rest of a run.
        assert stalled.until(lambda: stalled.counts[sid] > 0)
        time.sleep(0.5)
        fid = fast.request_hashed("/random.bin")
        assert until_done(fast, lambda: fast.responses[fid].ended)
        assert fast.hashers[fid].hexdigest() == digest
        assert until_done(stalled, lambda: stalled.responses[sid].ended)
        assert stalled.counts[sid] == size
        assert stalled.hashers[sid].hexdigest() == digest
    finally:
        stalled.close()
        fast.close()


# -- the window-bound ping-pong: read-ahead and busy polling ------------------------------

INPROCESS_TRANSPORTS = {
    "h2c": {},
    "h2c-no-sendfile": {"sendfile": False},
    "tls": {"self_signed": True},
}
# Grants around every edge of a read-ahead laid out as 16 KiB frames: whole frames, one byte
# short of and past a frame, inside one, several at once, and more than one read-ahead holds
# (READ_AHEAD_MAX), so the rest must be read afresh.
UNEVEN_GRANTS = [
    16384,
    32768,
    16383,
    1,
    16385,
    40000,
    100,
    65535,
    70000,
    131072,
    250000,
    5,
    32767,
    300000,
]


def grant(client: RawH2Client, sid: int, n: int) -> None:
    client.open_window(sid, n)
    client.open_window(None, n)


@pytest.mark.parametrize("transport_name", list(INPROCESS_TRANSPORTS))
def test_read_ahead_follows_every_grant_exactly(
    transport_name: str, inprocess_factory: Callable[..., Any], files_root: Path
) -> None:
    """While the window binds, the server reads the next frames ahead (readahead.py). Each
    grant must still bring exactly its size, frames cut where the grant ends, and the body
    must be the file's bytes in order, ended once."""
    changes = INPROCESS_TRANSPORTS[transport_name]
    server = inprocess_factory(**changes)
    expected = (files_root / "f100m.bin").read_bytes()[: 4 * MIB]
    client = RawH2Client(server.port, tls=bool(changes.get("self_signed")))
    try:
        sid = client.request("/f100m.bin", extra=[("range", f"bytes=0-{4 * MIB - 1}")])
        assert client.until(lambda: body_len(client, sid) >= WINDOW)
        assert client.quiet_for(QUIET) == 0
        ahead_before = STATS.body_bytes_read_ahead

        def measure() -> int:
            return body_len(client, sid)

        for n in UNEVEN_GRANTS:
            grant(client, sid, n)
            expect_more(client, measure, n)
        assert STATS.body_bytes_read_ahead > ahead_before, "no grant was served read ahead"
        grant(client, sid, 4 * MIB)
        assert client.until(lambda: client.responses[sid].ended)
        assert client.responses[sid].reset_code is None
        assert bytes(client.responses[sid].body) == expected
        ends = [e for e in client.events if isinstance(e, h2.events.StreamEnded)]
        assert len(ends) == 1
    finally:
        client.close()


def test_read_ahead_of_one_stream_never_reaches_another(
    inprocess_factory: Callable[..., Any], files_root: Path
) -> None:
    """Two window-bound downloads of different files on one connection, credit given to
    each in turn: one of them holds the connection's read-ahead, and neither body may carry
    a byte of the other's."""
    server = inprocess_factory()
    names = ["f100m.bin", "mib.bin"]
    expected = {name: (files_root / name).read_bytes()[:MIB] for name in names}
    client = RawH2Client(server.port)
    try:
        sids = {
            name: client.request(f"/{name}", extra=[("range", f"bytes=0-{MIB - 1}")])
            for name in names
        }
        # Both first windows share the connection's 64 KiB: let both streams have theirs.
        client.open_window(None, WINDOW)
        assert client.until(lambda: all(body_len(client, sid) >= WINDOW for sid in sids.values()))
        for n in (40000, 16384, 65535, 1, 70000):
            for sid in sids.values():
                target = body_len(client, sid) + n
                grant(client, sid, n)
                assert client.until(lambda s=sid, t=target: body_len(client, s) >= t)
        for sid in sids.values():
            grant(client, sid, MIB)
        assert client.until(lambda: all(client.responses[s].ended for s in sids.values()))
        for name, sid in sids.items():
            assert bytes(client.responses[sid].body) == expected[name], name
    finally:
        client.close()


def test_read_ahead_budget_is_bounded_and_stale_ones_are_taken_back(
    inprocess_factory: Callable[..., Any], files_root: Path
) -> None:
    """Clients that stop returning credit cannot pile up read-aheads (at most
    ReadAheadBudget.MAX per worker), and one held too long goes to a stream that moves."""
    from h2stream.io.readahead import ReadAheadBudget

    server = inprocess_factory(busy_poll_us=0)
    read_ahead = server.server.context.read_ahead  # the worker's budget
    expected = (files_root / "mib.bin").read_bytes()
    clients = [RawH2Client(server.port) for _ in range(ReadAheadBudget.MAX + 2)]
    try:
        sids = [client.request("/mib.bin") for client in clients]
        for client, sid in zip(clients, sids, strict=True):
            assert client.until(lambda c=client, s=sid: body_len(c, s) >= WINDOW)
            # One cut run each: every stream is now window-bound and asks for a read-ahead.
            grant(client, sid, 20000)
            assert client.until(lambda c=client, s=sid: body_len(c, s) >= WINDOW + 20000)
        assert read_ahead.held <= ReadAheadBudget.MAX
        time.sleep(ReadAheadBudget.STALE_SECONDS * 4)  # every holder is stale now
        moved_before = STATS.body_bytes_read_ahead
        for client, sid in zip(clients, sids, strict=True):
            grant(client, sid, 20000)
            assert client.until(lambda c=client, s=sid: body_len(c, s) >= WINDOW + 40000)
            grant(client, sid, 20000)
            assert client.until(lambda c=client, s=sid: body_len(c, s) >= WINDOW + 60000)
            assert read_ahead.held <= ReadAheadBudget.MAX
        assert STATS.body_bytes_read_ahead > moved_before
        for client, sid in zip(clients, sids, strict=True):
            grant(client, sid, MIB)
            assert client.until(lambda c=client, s=sid: bool(c.responses[s].ended))
            assert bytes(client.responses[sid].body) == expected
    finally:
        for client in clients:
            client.close()
    # Closed connections give theirs back.
    assert wait_until(lambda: read_ahead.held == 0)


def polls() -> int:
    return int(STATS.busy_poll_hits + STATS.busy_poll_misses)


def acking_client(port: int, tls: bool = False) -> StreamingClient:
    """Default 64 KiB windows, credit returned as data arrives: flow control binds."""
    return StreamingClient(port, tls=tls, auto_ack=True)


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_busy_poll_catches_the_credit_of_a_lone_connection(
    tls: bool, server_factory: Callable[..., Any], digests: dict[str, str], tmp_path: Path
) -> None:
    """A window-bound download (nghttp, 64 KiB windows): polls hit, and the body is exact.
    Over TLS the poll only peeks (the SSL layer reads and decrypts), so a body that came out
    whole shows the peeked bytes were left for it. The poll window is 1 ms here, not the
    default 50 us, so a hit does not depend on how fast a shared CI machine lets the client
    answer (an in-process Python client, sharing the server's GIL, is slower still)."""
    nghttp = require("nghttp")
    tls_args = ("--self-signed",) if tls else ()
    server = server_factory("--metrics-bind", "127.0.0.1:0", "--busy-poll-us", "1000", *tls_args)
    metrics = metrics_url(server)
    out = tmp_path / "download.bin"
    with open(out, "wb") as sink:
        done = subprocess.run(
            [nghttp, "-w", "16", "-W", "16", f"{server.url}/f100m.bin"],
            stdout=sink,
            stderr=subprocess.PIPE,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert sha256_file(out) == digests["f100m.bin"]
    with urllib.request.urlopen(metrics + "/metrics", timeout=10) as response:
        exposition = response.read().decode()
    hits = re.search(r'^h2stream_busy_polls_total\{result="hit"\} (\S+)$', exposition, re.M)
    polls = re.findall(r"^h2stream_busy_polls_total.*", exposition, re.M)
    assert hits is not None and float(hits.group(1)) > 0, polls


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
@pytest.mark.parametrize("case", ["off", "second-connection"])
def test_busy_poll_only_where_it_replaces_sleep(
    case: str, tls: bool, inprocess_factory: Callable[..., Any], digests: dict[str, str]
) -> None:
    """No polling when turned off, or while the worker has another connection (its events
    must not wait behind our poll), on h2c and TLS alike."""
    changes: dict[str, object] = {"busy_poll_us": 0} if case == "off" else {}
    if tls:
        changes["self_signed"] = True
    server = inprocess_factory(**changes)
    idle = RawH2Client(server.port, tls=tls) if case == "second-connection" else None
    client = acking_client(server.port, tls=tls)
    try:
        if idle is not None:  # answered first, so the worker surely counts it
            hello = idle.request("/hello.txt")
            assert idle.until(lambda: idle.responses[hello].ended)
        before = polls()
        sid = client.request_hashed("/mib.bin")
        assert until_done(client, lambda: client.responses[sid].ended)
        assert client.hashers[sid].hexdigest() == digests["mib.bin"]
        assert polls() == before
    finally:
        client.close()
        if idle is not None:
            idle.close()


def test_busy_poll_rests_when_credit_stops_and_still_serves(
    inprocess_factory: Callable[..., Any], files_root: Path
) -> None:
    """A peer that stops returning credit makes a few polls miss, then polling rests; the
    connection still answers a new request, and closing it mid-wait ends it cleanly."""
    from h2stream.io.busypoll import BusyPoll

    server = inprocess_factory()
    client = RawH2Client(server.port)
    try:
        sid = client.request("/f100m.bin")
        assert client.until(lambda: body_len(client, sid) >= WINDOW)
        misses_before, hits_before = STATS.busy_poll_misses, STATS.busy_poll_hits
        for _ in range(BusyPoll.MISSES_BEFORE_REST * 3):
            grant(client, sid, 1000)  # 10 ms apart: the poll after each grant misses
            client.quiet_for(0.01)
        misses = STATS.busy_poll_misses - misses_before
        # A run of misses ends in a rest; only a hit starts a new run (a grant that arrived
        # while a late poll was still on, which a loaded machine makes possible). Without the
        # rest, every one of the 12 grants would cost a miss.
        hits = STATS.busy_poll_hits - hits_before
        assert 1 <= misses <= BusyPoll.MISSES_BEFORE_REST * (1 + hits), (misses, hits)
        ok = client.request("/hello.txt")
        client.open_window(None, 100)  # the big stream's window stays shut: all for this one
        assert client.until(lambda: client.responses[ok].ended)
        assert bytes(client.responses[ok].body) == (files_root / "hello.txt").read_bytes()
    finally:
        client.close()
    assert wait_until(lambda: not server.server.connections)


@pytest.mark.parametrize("transport_name", ["h2c", "tls"])
def test_streams_taking_turns_read_the_next_ahead(
    transport_name: str, inprocess_factory: Callable[..., Any], files_root: Path
) -> None:
    """Four window-bound downloads on one connection (64 KiB windows, credit returned as the
    data arrives) take turns on the connection's credit. While it waits for credit the server
    reads the run of the stream that goes next, not more of the one that just went (which
    waits for its turn again): most bytes leave from read-aheads, and every body is exact."""
    changes = INPROCESS_TRANSPORTS[transport_name]
    server = inprocess_factory(**changes)
    names = ["mib.bin", "f100m.bin", "f256m.bin", "mib.bin"]
    expected = {name: (files_root / name).read_bytes()[:MIB] for name in set(names)}
    client = RawH2Client(server.port, tls=bool(changes.get("self_signed")), auto_ack=True)
    try:
        ahead_before = STATS.body_bytes_read_ahead
        sids = [
            (name, client.request(f"/{name}", extra=[("range", f"bytes=0-{MIB - 1}")]))
            for name in names
        ]
        assert client.until(lambda: all(client.responses[s].ended for _, s in sids), 60)
        for name, sid in sids:
            assert client.responses[sid].reset_code is None
            assert bytes(client.responses[sid].body) == expected[name], name
        ahead = STATS.body_bytes_read_ahead - ahead_before
        assert ahead >= len(names) * MIB // 2, f"{ahead} of {len(names) * MIB} read ahead"
    finally:
        client.close()
