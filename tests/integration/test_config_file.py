"""The config file and environment through the real CLI: CLI > H2STREAM_* > TOML file >
defaults, unknown keys named, ``h2stream check-config``.

What a server was configured with is read from what it does: which directory it serves and
the SETTINGS_MAX_CONCURRENT_STREAMS it advertises (read by a raw h2 client).
"""

from __future__ import annotations

from pathlib import Path

import h2.settings
from support.clients import RawH2Client, request
from support.commands import REPO, run_h2stream
from support.servers import ServerProcess


def _roots(tmp_path: Path) -> dict[str, Path]:
    roots = {}
    for name in ("file", "env", "cli"):
        root = tmp_path / name
        root.mkdir()
        (root / f"from-{name}.txt").write_text(f"{name}\n")
        roots[name] = root
    return roots


def _advertised_streams(port: int) -> int:
    client = RawH2Client(port)
    try:
        assert client.until(
            lambda: h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS in client.conn.remote_settings
        )
        return int(client.conn.remote_settings.max_concurrent_streams)
    finally:
        client.close()


def test_precedence_cli_over_environment_over_file(tmp_path: Path) -> None:
    roots = _roots(tmp_path)
    config = tmp_path / "h2stream.toml"
    config.write_text(
        f'root = "{roots["file"]}"\nbind = ["127.0.0.1:0"]\nmax-concurrent-streams = 5\n'
        "graceful_timeout = 2\n"
    )
    # The file alone.
    server = ServerProcess.exact("serve", "--config", str(config))
    try:
        assert request(server.port, "/from-file.txt").status == 200
        assert _advertised_streams(server.port) == 5
    finally:
        assert server.stop() == 0
    # The environment over the file; --config given as H2STREAM_CONFIG.
    env = {
        "H2STREAM_CONFIG": str(config),
        "H2STREAM_ROOT": str(roots["env"]),
        "H2STREAM_MAX_CONCURRENT_STREAMS": "7",
    }
    server = ServerProcess.exact("serve", env=env)
    try:
        assert request(server.port, "/from-env.txt").status == 200
        assert request(server.port, "/from-file.txt").status == 404
        assert _advertised_streams(server.port) == 7
    finally:
        assert server.stop() == 0
    # The command line over both.
    server = ServerProcess.exact(
        "serve", str(roots["cli"]), "--max-concurrent-streams", "9", env=env
    )
    try:
        assert request(server.port, "/from-cli.txt").status == 200
        assert request(server.port, "/from-env.txt").status == 404
        assert _advertised_streams(server.port) == 9
    finally:
        assert server.stop() == 0


def test_unknown_keys_and_bad_values_are_named(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('bind = ["127.0.0.1:0"]\nmax_streams = 10\n')
    result = run_h2stream("serve", str(tmp_path), "--config", str(config))
    assert result.returncode == 2
    assert "unknown key 'max_streams'" in result.stderr
    assert str(config) in result.stderr

    result = run_h2stream("serve", str(tmp_path), env={"H2STREAM_BOGUS_OPTION": "1"})
    assert result.returncode == 2
    assert "H2STREAM_BOGUS_OPTION" in result.stderr

    config.write_text('bind = ["127.0.0.1:0"]\nworkers = "many"\n')
    result = run_h2stream("serve", str(tmp_path), "--config", str(config))
    assert result.returncode == 2
    assert "workers" in result.stderr and "'many'" in result.stderr


def test_check_config_validates_without_serving(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(
        f'root = "{tmp_path}"\nbind = ["127.0.0.1:8443", "[::1]:8443"]\nworkers = "auto"\n'
        'pid_file = "/run/h2stream.pid"\nsupervise = true\n'
    )
    result = run_h2stream("check-config", str(good))
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout and "2 listener(s)" in result.stdout
    assert "listening" not in result.stdout

    bad = tmp_path / "bad.toml"
    bad.write_text("workers = 2\nreload_signal = 'HUP'\n")
    result = run_h2stream("check-config", str(bad))
    assert result.returncode == 2
    assert "unknown key 'reload_signal'" in result.stderr

    broken = tmp_path / "broken.toml"
    broken.write_text("workers = \n")
    result = run_h2stream("check-config", str(broken))
    assert result.returncode == 2
    assert str(broken) in result.stderr

    result = run_h2stream("check-config", str(tmp_path / "missing.toml"))
    assert result.returncode == 2
    assert "no such file" in result.stderr


def test_the_example_config_is_valid(tmp_path: Path) -> None:
    example = (REPO / "examples" / "h2stream.toml").read_text()
    assert 'root = "/srv/h2stream"' in example
    local = tmp_path / "h2stream.toml"
    local.write_text(example.replace('root = "/srv/h2stream"', f'root = "{tmp_path}"'))
    result = run_h2stream("check-config", str(local))
    assert result.returncode == 0, result.stderr
    assert "2 listener(s)" in result.stdout
