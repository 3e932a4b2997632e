"""Operator settings that broke well-behaved clients (issue 19), with real clients.

- ``--initial-window-size`` below 65,535: until the client acknowledges our SETTINGS it may
  send 65,535 bytes a stream (RFC 9113 6.9.2). Enforcing the smaller window from the first
  byte answered curl's and nghttp's uploads with FLOW_CONTROL_ERROR.
- ``--max-connection-buffer`` below what the server itself queues cut ordinary downloads
  off: any accepted value must let curl download a 64 MiB file, over h2c, TLS and HTTP/1.1.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from support.clients import RawConnection
from support.commands import require
from support.curl import run_curl
from support.files import sha256_file, write_pattern
from support.frames import SETTINGS, WINDOW_UPDATE, data, headers, request_block
from support.frames import settings as settings_frame
from support.servers import ServerProcess

from h2stream.config import option_fields

SINK = "/_h2stream/sink"


@pytest.fixture(scope="module")
def upload_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("upload") / "up.bin"
    write_pattern(path, 3 << 20)
    return path


@pytest.fixture(scope="module")
def big_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("big")
    write_pattern(root / "f64m.bin", 64 << 20)
    return root


@pytest.mark.parametrize("window", ["16384", "1024"])
def test_uploads_work_with_a_small_initial_window(
    server_factory: Callable[..., ServerProcess], upload_file: Path, window: str
) -> None:
    server = server_factory("--initial-window-size", window)
    size = upload_file.stat().st_size
    result = run_curl("--http2-prior-knowledge", "-T", str(upload_file), server.url + SINK)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["bytes"] == size
    nghttp = subprocess.run(
        [require("nghttp"), "-d", str(upload_file), server.url + SINK],
        capture_output=True,
        timeout=40,
    )
    assert nghttp.returncode == 0, nghttp.stderr
    assert json.loads(nghttp.stdout)["bytes"] == size


def _lowest_buffer_cap() -> str:
    """The smallest --max-connection-buffer the configuration accepts."""
    for field, spec in option_fields():
        if field.name == "max_connection_buffer":
            return str(getattr(spec.parse, "low", 1))
    raise AssertionError("no max_connection_buffer option")


@pytest.mark.parametrize("cap", [_lowest_buffer_cap(), "256K"])
def test_downloads_survive_any_connection_buffer_cap(
    server_factory: Callable[..., ServerProcess], big_root: Path, cap: str
) -> None:
    expected = sha256_file(big_root / "f64m.bin")
    for tls, versions in ((False, ("--http2-prior-knowledge", "--http1.1")), (True, ("--http2",))):
        server = server_factory(
            "--max-connection-buffer", cap, *(["--self-signed"] if tls else []), root=big_root
        )
        for version in versions:
            result = run_curl(version, "-k", server.url + "/f64m.bin", max_time=60)
            assert result.returncode == 0, f"{version} tls={tls}: {result.stderr!r}"
            assert hashlib.sha256(result.stdout).hexdigest() == expected
        server.stop()


def test_a_stream_filled_before_the_ack_gets_its_credit(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """With ``--initial-window-size 1024``, a client sends 20,000 bytes under the default
    window before it acknowledges our SETTINGS: the ACK leaves its window at 1,024 - 64,511
    + what was consumed, so the server must return that credit then (the uploads above hung
    now and then when it waited for consumption that had already happened)."""
    server = server_factory("--initial-window-size", "1024")
    conn = RawConnection(server.port, ack_settings=False)
    try:
        assert conn.until(lambda: any(f.kind == SETTINGS for f in conn.frames), 5)
        conn.send(headers(1, request_block(SINK, "POST"), end_stream=False))
        conn.send(data(1, b"u" * 16000) + data(1, b"u" * 4000))
        conn.read_for(0.3)  # the sink has consumed it all by now
        conn.send(settings_frame(ack=True))

        def credit() -> int:
            return sum(
                int.from_bytes(f.payload, "big")
                for f in conn.frames
                if f.kind == WINDOW_UPDATE and f.stream_id == 1
            )

        # The client's window is 1,024 - 64,511 + 65,535 - 20,000 + credit: at least 1,024
        # once the 20,000 consumed bytes are returned.
        assert conn.until(lambda: credit() >= 20_000 - 1024, 5), credit()
        conn.send(data(1, b"u" * 1000, end=True))
        assert conn.until(lambda: b"21000" in conn.body(1), 5), conn.frames[-3:]
    finally:
        conn.close()
