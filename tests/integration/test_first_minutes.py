"""What a new user meets in the first minutes: errors that name the key meant, examples that
work as shipped, feedback while Ctrl-C drains and a second Ctrl-C that stops at once, one
spelling of booleans in the example exports."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support.commands import REPO, run_h2stream
from support.curl import curl_download, run_curl
from support.servers import ServerProcess

BIG = "f256m.bin"


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("no-compression = true", "did you mean compression = false?"),
        ("no_sendfile = true", "did you mean sendfile = false?"),
        ("max-concurent-streams = 10", "did you mean max-concurrent-streams?"),
    ],
)
def test_an_unknown_key_names_the_nearest_valid_one(tmp_path: Path, key: str, hint: str) -> None:
    config = tmp_path / "h2stream.toml"
    config.write_text(f'root = "."\n{key}\n')
    result = run_h2stream("check-config", str(config))
    assert result.returncode == 2  # as serve --config exits for the same file
    assert hint in result.stderr, result.stderr


def test_an_unknown_variable_names_the_nearest_valid_one(tmp_path: Path) -> None:
    result = run_h2stream("serve", str(tmp_path), env={"H2STREAM_NO_COMPRESSION": "1"})
    assert result.returncode == 2
    assert "did you mean H2STREAM_COMPRESSION=false?" in result.stderr, result.stderr


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("*.toml")), ids=str)
def test_every_example_config_passes_check_config_as_shipped(example: Path) -> None:
    result = run_h2stream("check-config", str(example))
    assert result.returncode == 0, result.stderr


def test_relative_paths_in_a_config_file_are_from_its_directory(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    config = tmp_path / "h2stream.toml"
    config.write_text('root = "site"\npid-file = "run/h2stream.pid"\n')
    result = run_h2stream("check-config", str(config))
    assert result.returncode == 2
    assert "pid file" in result.stderr and "directory does not exist" in result.stderr
    (tmp_path / "run").mkdir()
    result = run_h2stream("check-config", str(config))
    assert result.returncode == 0, result.stderr
    assert f"root {tmp_path / 'site'}" in result.stdout


def test_ctrl_c_says_it_drains_and_a_second_stops_at_once(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory("--graceful-timeout", "60")
    curl = curl_download(f"{server.url}/{BIG}", "--http2-prior-knowledge", "--limit-rate", "20M")
    try:
        assert curl.progress.wait(30), "the download did not start"
        server.signal(signal.SIGINT)
        assert server.wait_for_log("draining 1 connection (up to 60 s), Ctrl-C again"), (
            server.log_text()
        )
        time.sleep(0.5)
        assert server.proc.poll() is None, "the first Ctrl-C must drain, not stop"
        started = time.monotonic()
        server.signal(signal.SIGINT)
        assert server.wait(10) == 0
        assert time.monotonic() - started < 5
        assert "stopping now" in server.log_text()
    finally:
        if curl.proc.poll() is None:
            curl.proc.kill()
        curl.finish()  # also ends its watchdog, which would keep pytest waiting


def test_export_csv_spells_booleans_as_the_ndjson_does(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory("--app", "examples.export_app:app", root=REPO / "examples")
    csv = run_curl("--http2-prior-knowledge", f"{server.url}/export.csv?rows=6", text=True)
    ndjson = run_curl("--http2-prior-knowledge", f"{server.url}/export.ndjson?rows=6", text=True)
    assert csv.returncode == 0 and ndjson.returncode == 0
    csv_values = [line.rsplit(",", 1)[1] for line in csv.stdout.splitlines()[1:]]
    assert set(csv_values) == {"true", "false"}
    assert '"active": true' in ndjson.stdout.replace('"active":true', '"active": true')
    assert "True" not in csv.stdout and "False" not in csv.stdout
