"""Access log lines report what happened: bytes actually sent, resets, and the request id the
client saw in its response headers.

Servers run as child processes with ``--access-log FILE``; lines are read back from the file
(written in batches, so reads wait for them with a deadline).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h2.errors
import httpx
import pytest
from support.clients import RawH2Client
from support.files import SIZES
from support.polling import wait_until

# The combined format, then: transport, stream id, duration, mode, "range", reset, request id.
LINE = re.compile(
    r'^(?P<remote>\S+) - - \[(?P<time>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) HTTP/2.0" '
    r'(?P<status>\d+) (?P<bytes>\d+) "(?P<referer>{q})" "(?P<agent>{q})" '
    r"(?P<transport>h2c|h2) (?P<stream>\d+) (?P<duration>\d+\.\d{{6}}) (?P<mode>\S+) "
    r'"(?P<range>{q})" (?P<reset>\S+) (?P<request_id>\S+)$'.format(q=r'(?:[^"\\]|\\.)*')
)
HEX32 = re.compile(r"^[0-9a-f]{32}$")
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def read_lines(path: Path, count: int, timeout: float = 10.0) -> list[str]:
    """The log's lines once there are at least ``count`` of them (batched writes)."""

    def lines() -> list[str]:
        return path.read_text().splitlines() if path.exists() else []

    assert wait_until(lambda: len(lines()) >= count, timeout), f"log has {lines()!r}"
    return lines()


def parse(line: str) -> dict[str, str]:
    match = LINE.match(line)
    assert match, f"not a combined+ line: {line!r}"
    return match.groupdict()


@pytest.fixture
def logged(server_factory: Callable[..., Any], tmp_path: Path) -> Callable[..., tuple[Any, Path]]:
    def start(*args: str) -> tuple[Any, Path]:
        path = tmp_path / "access.log"
        return server_factory("--access-log", str(path), *args), path

    return start


def test_completed_download_and_request_ids(logged: Callable[..., tuple[Any, Path]]) -> None:
    server, path = logged("--zero-copy-min-frame", "0")  # mode "sendfile" even for 16 KiB frames
    with httpx.Client(http1=False, http2=True, timeout=30) as client:
        full = client.get(f"{server.url}/mib.bin", headers={"x-request-id": "client-id_1.2:3"})
        part = client.get(f"{server.url}/kib.bin", headers={"range": "bytes=100-199"})
        traced = client.get(f"{server.url}/no-such", headers={"traceparent": TRACEPARENT})
        unsafe = client.get(f"{server.url}/one.bin", headers={"x-request-id": 'a"b c'})
        too_long = client.get(f"{server.url}/one.bin", headers={"x-request-id": "x" * 200})
    assert full.headers["x-request-id"] == "client-id_1.2:3"
    assert len(full.content) == SIZES["mib.bin"]
    assert part.status_code == 206
    generated = part.headers["x-request-id"]
    assert HEX32.match(generated)
    assert traced.headers["x-request-id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    # Unsafe or oversized ids are never echoed: a fresh one replaces them.
    for response in (unsafe, too_long):
        assert HEX32.match(response.headers["x-request-id"])
    assert len({generated, unsafe.headers["x-request-id"], too_long.headers["x-request-id"]}) == 3
    lines = [parse(line) for line in read_lines(path, 5)]
    assert [line["request_id"] for line in lines] == [
        "client-id_1.2:3",
        generated,
        "4bf92f3577b34da6a3ce929d0e0e4736",
        unsafe.headers["x-request-id"],
        too_long.headers["x-request-id"],
    ]
    first, second, third = lines[:3]
    assert first["remote"] == "127.0.0.1"
    assert (first["method"], first["path"], first["status"]) == ("GET", "/mib.bin", "200")
    assert int(first["bytes"]) == SIZES["mib.bin"]
    assert first["transport"] == "h2c" and first["mode"] == "sendfile" and first["reset"] == "-"
    assert first["agent"].startswith("python-httpx/")
    assert (second["status"], second["bytes"], second["range"]) == ("206", "100", "bytes=100-199")
    assert (third["status"], third["mode"]) == ("404", "copy")
    assert [int(line["stream"]) for line in lines] == [1, 3, 5, 7, 9]


def test_aborted_download_logs_bytes_sent(logged: Callable[..., tuple[Any, Path]]) -> None:
    server, path = logged("--no-sendfile")
    client = RawH2Client(server.port, auto_ack=False)
    try:
        stream_id = client.request("/mib.bin", extra=[("x-request-id", "abort-1")])
        # The first window arrives, then the client gives up.
        assert client.until(lambda: len(client.responses[stream_id].body) >= 65535)
        assert client.responses[stream_id].headers[b"x-request-id"] == b"abort-1"
        client.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        client.flush()
        (line,) = read_lines(path, 1)
    finally:
        client.close()
    fields = parse(line)
    # What was framed (one initial window), not the content-length of 1 MiB.
    assert int(fields["bytes"]) == 65535
    assert (fields["status"], fields["reset"], fields["mode"]) == ("200", "CANCEL", "copy")
    assert fields["request_id"] == "abort-1"


def test_json_format(logged: Callable[..., tuple[Any, Path]]) -> None:
    server, path = logged("--access-log-format", "json", "--self-signed")
    with httpx.Client(http1=False, http2=True, verify=False, timeout=30) as client:
        response = client.get(
            f"{server.url}/kib.bin", headers={"referer": 'https://x/"q"', "user-agent": "tester/1"}
        )
        head = client.head(f"{server.url}/kib.bin")
    records = [json.loads(line) for line in read_lines(path, 2)]
    record = records[0]
    assert record["request_id"] == response.headers["x-request-id"]
    assert record["status"] == 200 and record["bytes_sent"] == 1024
    assert record["transport"] == "h2" and record["mode"] == "copy"
    assert record["method"] == "GET" and record["path"] == "/kib.bin"
    assert record["referer"] == 'https://x/"q"'
    assert record["reset"] is None and record["stream_id"] == 1
    assert record["duration"] >= 0 and record["ttfb"] >= 0
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", record["time"])
    # HEAD: headers only, no body bytes and no send mode.
    assert (records[1]["method"], records[1]["bytes_sent"], records[1]["mode"]) == ("HEAD", 0, None)
    assert records[1]["request_id"] == head.headers["x-request-id"]


def test_without_access_log_ids_are_only_echoed(server_factory: Callable[..., Any]) -> None:
    server = server_factory()
    with httpx.Client(http1=False, http2=True, timeout=30) as client:
        plain = client.get(f"{server.url}/one.bin")
        echoed = client.get(f"{server.url}/one.bin", headers={"x-request-id": "mine"})
    assert "x-request-id" not in plain.headers
    assert echoed.headers["x-request-id"] == "mine"


def test_combined_escapes_client_values(logged: Callable[..., tuple[Any, Path]]) -> None:
    server, path = logged()
    client = RawH2Client(server.port)
    try:
        stream_id = client.request(
            "/one.bin?q=%22", extra=[("user-agent", 'evil" 200 1 "x'), ("referer", "a\\b")]
        )
        assert client.until(lambda: client.responses[stream_id].ended)
        (line,) = read_lines(path, 1)
    finally:
        client.close()
    fields = parse(line)
    assert fields["agent"] == 'evil\\" 200 1 \\"x'
    assert fields["referer"] == "a\\\\b"
    assert fields["path"] == "/one.bin?q=%22"
