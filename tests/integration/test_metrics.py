"""/metrics tells the truth: counters equal what real clients were sent, by each send path.

Every test scrapes a real server process through its --metrics-bind listener and parses the
exposition with prometheus_client's parser. The multi-worker sum is tested on snapshots
published to real files, as worker processes will publish them.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h2.errors
import h2.events
import h2.settings
import httpx
import pytest
from support.clients import RawConnection, RawH2Client
from support.files import SIZES
from support.frames import ACK, PING, RST_STREAM, data, headers, ping, request_block
from support.metrics import Scrape, scrape
from support.polling import wait_until

import h2stream
from h2stream.observe import metrics
from h2stream.observe.metrics import Snapshot

BODY = "h2stream_response_body_bytes_total"
FILES = ["mib.bin", "f16385.bin", "kib.bin", "one.bin"]


def download(url: str, names: list[str], tls: bool) -> list[int]:
    """Fetch ``names`` one after another on one HTTP/2 connection; return the sizes received."""
    sizes = []
    with httpx.Client(http1=False, http2=True, verify=not tls, timeout=60) as client:
        for name in names:
            response = client.get(f"{url}/{name}")
            assert response.http_version == "HTTP/2"
            sizes.append(len(response.content))
    return sizes


def test_exposition_families_and_process_figures(observed: Callable[..., tuple[Any, str]]) -> None:
    server, base = observed()
    got = scrape(base)
    types = {name: family.type for name, family in got.families.items()}
    expected = {
        "h2stream_connections_accepted": "counter",
        "h2stream_connections_active": "gauge",
        "h2stream_streams_active": "gauge",
        "h2stream_streams_opened": "counter",
        "h2stream_streams": "counter",
        "h2stream_response_body_bytes": "counter",
        "h2stream_request_body_bytes": "counter",
        "h2stream_flow_control_stalls": "counter",
        "h2stream_flow_control_stall_seconds": "counter",
        "h2stream_rst_stream_sent": "counter",
        "h2stream_rst_stream_received": "counter",
        "h2stream_goaway_sent": "counter",
        "h2stream_goaway_received": "counter",
        "h2stream_limit_events": "counter",
        "h2stream_time_to_first_byte_seconds": "histogram",
        "h2stream_stream_duration_seconds": "histogram",
        "h2stream_build_info": "gauge",
        "process_cpu_seconds": "counter",
        "process_resident_memory_bytes": "gauge",
        "process_open_fds": "gauge",
        "process_start_time_seconds": "gauge",
    }
    for name, kind in expected.items():
        assert types.get(name) == kind, f"{name}: {types.get(name)}"
    # psutil's view of the server process, not of the test process.
    assert got.value("process_open_fds") == pytest.approx(server.fd_count(), abs=3)
    assert got.value("process_resident_memory_bytes") == pytest.approx(server.rss(), rel=0.5)
    assert abs(got.value("process_start_time_seconds") - server.ps.create_time()) < 1
    (info,) = got.families["h2stream_build_info"].samples
    assert info.value == 1
    assert info.labels["version"] == h2stream.__version__
    assert set(info.labels) == {"version", "python", "h2", "uvloop"}
    # No path labels anywhere: the exposition's size must not grow with traffic.
    assert all("path" not in s.labels for f in got.families.values() for s in f.samples)


@pytest.mark.parametrize(
    ("transport", "args"),
    [
        ("h2c-sendfile", ("--zero-copy-min-frame", "0")),
        ("h2c-copy", ("--no-sendfile",)),
        ("tls-copy", ("--self-signed",)),
    ],
)
def test_body_bytes_by_mode_equal_what_was_sent(
    observed: Callable[..., tuple[Any, str]], transport: str, args: tuple[str, ...]
) -> None:
    server, base = observed(*args)
    sizes = download(server.url, FILES, tls="tls" in transport)
    assert sizes == [SIZES[name] for name in FILES]
    expected = sum(sizes)
    got = scrape(base)
    sendfile = got.value(BODY, mode="sendfile")
    copy = got.value(BODY, mode="copy")
    assert sendfile + copy == expected
    assert got.value(BODY, mode="zstd") == got.value(BODY, mode="gzip") == 0
    if transport == "h2c-sendfile":
        # Zero-copy carries all but the last frame of each multi-frame file.
        assert sendfile >= SIZES["mib.bin"] - 16384
    else:
        assert sendfile == 0
    assert got.value("h2stream_streams_total", status_class="2xx") == len(FILES)
    assert got.value("h2stream_streams_opened_total") == len(FILES)
    assert got.value("h2stream_connections_accepted_total") == 1
    # Every file had a body: one TTFB observation each; every stream one duration.
    assert got.value("h2stream_time_to_first_byte_seconds_count") == len(FILES)
    assert got.value("h2stream_stream_duration_seconds_count") == len(FILES)
    assert got.value("h2stream_stream_duration_seconds_bucket", le="+Inf") == len(FILES)
    assert got.value("h2stream_stream_duration_seconds_sum") > 0
    # The connection is gone once curl has exited (the server notices the close).
    assert wait_until(lambda: scrape(base).value("h2stream_connections_active") == 0)
    assert scrape(base).value("h2stream_streams_active") == 0


def test_status_classes_and_request_bytes(observed: Callable[..., tuple[Any, str]]) -> None:
    server, base = observed()
    client = RawH2Client(server.port)
    try:
        missing = client.request("/no-such-file")
        # A POST with a 40000-byte body: refused (405), its DATA still received and counted.
        post = client.request("/kib.bin", method="POST", end_stream=False)
        for offset in range(0, 40000, 10000):
            client.conn.send_data(post, b"x" * 10000, end_stream=offset == 30000)
        client.flush()
        assert client.until(lambda: client.responses[missing].ended)
        assert client.until(lambda: client.responses[post].ended)
        # A PING answered means everything sent before it was processed.
        client.conn.ping(b"observed")
        client.flush()
        assert client.until(
            lambda: any(isinstance(e, h2.events.PingAckReceived) for e in client.events)
        )
    finally:
        client.close()
    got = scrape(base)
    assert client.responses[missing].status == 404
    assert client.responses[post].status == 405
    assert got.value("h2stream_streams_total", status_class="4xx") == 2
    assert got.value("h2stream_streams_total", status_class="2xx") == 0
    assert got.value("h2stream_request_body_bytes_total") == 40000


def test_request_bytes_after_the_answer_are_counted(
    observed: Callable[..., tuple[Any, str]],
) -> None:
    """DATA that arrives after the server answered (405) and reset the stream (RST_STREAM
    NO_ERROR, RFC 9113 section 8.1) was received all the same: it counts."""
    server, base = observed()
    conn = RawConnection(server.port)
    try:
        conn.send(headers(1, request_block("/kib.bin", method="POST"), end_stream=False))
        assert conn.until(
            lambda: any(f.kind == RST_STREAM and f.stream_id == 1 for f in conn.frames)
        )
        for last in (False, False, False, True):
            conn.send(data(1, b"x" * 10000, end=last))
        conn.send(ping(b"observed"))
        assert conn.until(lambda: any(f.kind == PING and f.flags & ACK for f in conn.frames))
    finally:
        conn.close()
    assert scrape(base).value("h2stream_request_body_bytes_total") == 40000


def test_stalls_rise_while_the_client_holds_its_window(
    observed: Callable[..., tuple[Any, str]],
) -> None:
    server, base = observed()
    before = scrape(base)
    assert before.value("h2stream_flow_control_stalls_total") == 0
    # Only the stream window binds: the connection window is large, nothing is acknowledged.
    client = RawH2Client(server.port, auto_ack=False, connection_window=1 << 30)
    hold = 0.5
    try:
        stream_id = client.request("/mib.bin")
        assert client.until(lambda: len(client.responses[stream_id].body) >= 65535)
        parked = scrape(base)
        assert parked.value("h2stream_flow_control_stalls_total") == 1
        assert parked.value("h2stream_streams_active") == 1
        time.sleep(hold)
        client.open_window(stream_id, SIZES["mib.bin"])
        assert client.until(lambda: client.responses[stream_id].ended, timeout=30)
    finally:
        client.close()
    after = scrape(base)
    assert len(client.responses[stream_id].body) == SIZES["mib.bin"]
    assert after.value("h2stream_flow_control_stalls_total") == 1
    # Parked before the client saw the first window's end, woken after the update it sent
    # ``hold`` seconds later: the wait counted is at least that long.
    assert after.value("h2stream_flow_control_stall_seconds_total") >= hold
    assert after.value("h2stream_time_to_first_byte_seconds_count") == 1
    assert after.value("h2stream_stream_duration_seconds_sum") >= hold


def test_resets_and_goaways_by_error_code(observed: Callable[..., tuple[Any, str]]) -> None:
    server, base = observed()
    client = RawH2Client(server.port, auto_ack=False)
    try:
        stream_id = client.request("/mib.bin")
        assert client.until(lambda: len(client.responses[stream_id].body) >= 65535)
        client.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        client.conn.close_connection(h2.errors.ErrorCodes.NO_ERROR)
        client.flush()
        # After the peer's GOAWAY the server finishes and closes the connection.
        assert client.until(lambda: client.closed, timeout=10)
    finally:
        client.close()
    assert wait_until(
        lambda: scrape(base).value("h2stream_goaway_received_total", code="NO_ERROR") == 1
    )
    got = scrape(base)
    assert got.value("h2stream_rst_stream_received_total", code="CANCEL") == 1
    assert got.value("h2stream_streams_total", status_class="2xx") == 1
    # A protocol violation: h2 answers GOAWAY(PROTOCOL_ERROR), counted by code.
    bad = RawH2Client(server.port)
    try:
        bad.sock.sendall(b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00")  # WINDOW_UPDATE 0
        assert bad.until(lambda: bad.goaway is not None or bad.closed)
    finally:
        bad.close()
    assert wait_until(
        lambda: scrape(base).value("h2stream_goaway_sent_total", code="PROTOCOL_ERROR") == 1
    )


# -- several worker processes: snapshots published to files, summed at scrape time ----------

_PUBLISHER = """
import sys
import h2stream
from h2stream.observe import metrics
from h2stream.core.stats import STATS
STATS.body_bytes_sendfile += int(sys.argv[2])
STATS.connections_active += 2
STATS.rst_sent_codes[8] = 3
STATS.limit_events["ping_flood"] = 1
metrics.STREAMS.status_classes[2] += 5
metrics.STREAMS.ttfb.observe(0.002)
metrics.publish_snapshot(sys.argv[1], worker=sys.argv[3], final=sys.argv[4] == "final")
"""


def test_worker_snapshots_are_summed(tmp_path: Path) -> None:
    run_dir = tmp_path / "metrics"
    run_dir.mkdir()
    publishers = [
        subprocess.Popen(
            [sys.executable, "-c", _PUBLISHER, str(run_dir / f"w{worker}.json"), str(sent), *tag]
        )
        for worker, sent, *tag in (
            ("0", 1000, "0", "live"),
            ("1", 234, "1", "live"),
            ("2", 7, "2", "final"),
        )
    ]
    assert [p.wait(60) for p in publishers] == [0, 0, 0]
    (run_dir / "w9.json").write_text("{half a snap")  # torn or foreign: skipped
    registry = metrics.registry_for(metrics.files_source(str(run_dir / "w*.json")))
    got = Scrape(metrics.render(registry).decode())
    # Counters of all three processes, including the one that exited.
    assert got.value(BODY, mode="sendfile") == 1241
    assert got.value("h2stream_streams_total", status_class="2xx") == 15
    assert got.value("h2stream_rst_stream_sent_total", code="CANCEL") == 9
    assert got.value("h2stream_limit_events_total", kind="ping_flood") == 3
    assert got.value("h2stream_time_to_first_byte_seconds_count") == 3
    assert got.value("h2stream_time_to_first_byte_seconds_bucket", le="0.0025") == 3
    # Gauges of running workers only; per-worker figures carry a worker label.
    assert got.value("h2stream_connections_active") == 4
    assert got.value("h2stream_worker_connections_active", worker="0") == 2
    assert got.value("h2stream_worker_connections_active", worker="1") == 2
    assert ("h2stream_worker_connections_active", (("worker", "2"),)) not in got.samples
    assert got.value("process_resident_memory_bytes") > 0
    # A snapshot survives the trip through JSON unchanged.
    snap = Snapshot.take("x")
    assert Snapshot.from_json(snap.to_json()) == snap
