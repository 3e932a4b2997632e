"""HTTP/1.1 connection behaviour: pipelining in order with a bounded read-ahead, keep-alive
and its idle timeout, the request cap, timeouts on a slow head or body, graceful drain,
the access log's protocol and the limits' range checks."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support.curl import curl_download
from support.metrics import LimitEvents, scrape
from support.polling import wait_until
from support.servers import InProcessServer, ServerProcess
from test_http1_smuggling import responses, send

from h2stream.cli import build_parser, cli_values
from h2stream.config import ConfigError, load_config

GET = b"GET /%s HTTP/1.1\r\nHost: a\r\n\r\n"


def test_pipelined_requests_answered_in_order(h2c_server: ServerProcess) -> None:
    names = [b"hello.txt", b"kib.bin", b"empty.bin", b"one.bin"] * 10
    data = (
        b"".join(GET % n for n in names)
        + b"GET /hello.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    received, outcome = send(h2c_server.port, data)
    assert outcome == "eof"
    sizes = {b"hello.txt": 16, b"kib.bin": 1024, b"empty.bin": 0, b"one.bin": 1}
    answers = responses(received)
    assert [len(body) for _, body in answers] == [sizes[n] for n in names] + [16]
    assert {status for status, _ in answers} == {200}


def test_pipelining_beyond_the_depth_pauses_reading(
    inprocess_factory: Callable[..., InProcessServer], tmp_path: Path
) -> None:
    """A client that pipelines without reading: once a response blocks, the server parses
    only the pipelining depth ahead and stops reading (TCP holds the rest); every request is
    answered, in order, once the client reads."""
    # 16 MiB: more than loopback's socket buffers hold, so its response blocks.
    (tmp_path / "block.bin").write_bytes(bytes(16 << 20))
    (tmp_path / "empty.bin").write_bytes(b"")
    server = inprocess_factory(http1_pipeline_depth=2, root=str(tmp_path))
    count = 2000
    data = GET % b"block.bin" + GET % b"empty.bin" * count
    with socket.socket() as sock:
        sock.connect(("127.0.0.1", server.port))
        sock.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 1
        while sent < len(data) and time.monotonic() < deadline:
            try:
                sent += sock.send(data[sent : sent + 65536])
            except BlockingIOError:
                time.sleep(0.05)

        async def held() -> tuple[int, bool]:
            (connection,) = server.server.connections
            http1 = connection.http1
            transport = connection._transport
            return len(http1._queue), transport.is_reading()

        queued, reading = server.call(held())
        assert queued <= 2 + 1  # the depth, plus the requests of the read that reached it
        assert not reading
        # Reading the answers lets the rest in.
        sock.setblocking(True)
        sock.settimeout(20)
        rest = threading.Thread(target=sock.sendall, args=(data[sent:],), daemon=True)
        rest.start()
        received = bytearray()
        expected = (16 << 20) + count * 100
        while received.count(b"HTTP/1.1 200") < count + 1 or len(received) < expected:
            chunk = sock.recv(1 << 20)
            assert chunk, f"closed early: {received[-300:]!r}"
            received += chunk
        rest.join(10)
    assert received.count(b"HTTP/1.1 200") == count + 1


def test_keepalive_timeout_closes_idle_connections(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory("--http1-keepalive-timeout", "0.5", "--metrics-bind", "127.0.0.1:0")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(GET % b"hello.txt")
        time.sleep(0.2)
        first = sock.recv(65536)
        assert responses(first) == [(200, b"hello, h2stream\n")]
        start = time.monotonic()
        assert sock.recv(100) == b""
        assert time.monotonic() - start < 5


def test_request_cap_closes_after_the_last(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory("--max-requests-per-connection", "3")
    received, outcome = send(server.port, GET % b"hello.txt" * 5)
    assert outcome == "eof"
    assert [s for s, _ in responses(received)] == [200, 200, 200]
    assert received.lower().count(b"connection: close") == 1


def test_slow_head_and_slow_body_time_out(
    observed: Callable[..., tuple[ServerProcess, str]],
) -> None:
    server, metrics = observed(
        "--preface-timeout", "0.5", "--header-timeout", "0.5", "--http1-body-timeout", "0.5"
    )
    # A second head that never ends: closed without an answer.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(GET % b"hello.txt" + b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        assert [s for s, _ in responses(data)] == [200]
    # A body that stops: 408 (nothing was answered yet), then closed.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /_h2stream/sink HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nab")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.1 408 ")
    events = LimitEvents(metrics)
    assert events.wait_for("header_timeout") >= 1
    assert events.wait_for("body_timeout") >= 1


def test_graceful_drain(server_factory: Callable[..., ServerProcess]) -> None:
    """SIGTERM: an idle keep-alive connection closes at once, a download in flight finishes."""
    server = server_factory("--http1-keepalive-timeout", "60")
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    idle.sendall(GET % b"hello.txt")
    time.sleep(0.3)
    assert responses(idle.recv(65536)) == [(200, b"hello, h2stream\n")]
    download = curl_download(f"{server.url}/f256m.bin", "--http1.1", "--limit-rate", "100M")
    assert download.progress.wait(10)
    server.signal(signal.SIGTERM)
    start = time.monotonic()
    assert idle.recv(100) == b""
    assert time.monotonic() - start < 3
    idle.close()
    fetched = download.fetched()
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.size == 256 << 20
    assert server.wait(30) == 0


def test_access_log_names_the_protocol(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    server = server_factory("--access-log", str(log), "--access-log-format", "json")
    send(server.port, b"GET /hello.txt HTTP/1.0\r\n\r\n")
    send(server.port, GET % b"kib.bin" + b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    subprocess.run(
        ["curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null", f"{server.url}/one.bin"],
        check=True, timeout=30,
    )  # fmt: skip
    server.stop()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    seen = {(r["protocol"], r["status"]) for r in records}
    assert {("HTTP/1.0", 200), ("HTTP/1.1", 200), ("HTTP/1.1", 404), ("HTTP/2.0", 200)} <= seen


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--http", "3"),
        ("--http", ","),
        ("--http1-max-head-size", "100"),
        ("--http1-max-headers", "0"),
        ("--http1-pipeline-depth", "5000"),
    ],
)
def test_limits_are_range_checked(flag: str, value: str) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", ".", flag, value])


def test_http_option_accepts_version_lists() -> None:
    def http(value: str) -> str:
        args = build_parser().parse_args(["serve", ".", "--http", value])
        return load_config(cli_values(args), environ={}).http

    assert http("2") == "2"
    assert http("http/1.1,2") == "1.1,2"
    assert http(" 2, 1.1") == "1.1,2"
    assert load_config({}, environ={"H2STREAM_HTTP": "2"}).http == "2"
    with pytest.raises(ConfigError):
        load_config({}, environ={"H2STREAM_HTTP": "1.0"})


def test_metrics_count_each_protocol(observed: Callable[..., tuple[ServerProcess, str]]) -> None:
    server, metrics = observed()
    send(server.port, GET % b"kib.bin" + b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    send(server.port, b"GET /hello.txt HTTP/1.0\r\n\r\n")
    subprocess.run(
        ["curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null", f"{server.url}/one.bin"],
        check=True, timeout=30,
    )  # fmt: skip

    def counts() -> dict[str, float]:
        return scrape(metrics).by_label("h2stream_exchanges_by_protocol_total", "protocol")

    got = wait_until(counts, 10, 0.1, until=lambda c: sum(c.values()) >= 4)
    assert got == {"HTTP/2": 1, "HTTP/1.1": 2, "HTTP/1.0": 1}
    streams = scrape(metrics).by_label("h2stream_streams_total", "status_class")
    assert streams["2xx"] == 3 and streams["4xx"] == 1  # every metric counts HTTP/1.x too
