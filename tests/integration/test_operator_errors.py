"""Bad settings from the operator end the start at once, in one ``h2stream: error:`` line that
names the option and what it accepts, with the same exit code whichever command or source
(flag, environment, config file) carried them; nothing is discovered per connection later.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from support.commands import run_h2stream

# Values issue 19 found accepted: each started a server that then hung, spun or failed every
# connection. (flag, value, the range the error must name)
ACCEPTED_BEFORE = [
    ("--max-send-frame-size", "0", "1024..16777215"),
    ("--write-quantum", "0", "16384..1073741824"),
    ("--max-frame-size", "1024", "16384..16777215"),
    ("--max-frame-size", "0", "16384..16777215"),
    ("--max-frame-size", "32M", "16384..16777215"),
    ("--initial-window-size", "4G", "1..2147483647"),
    ("--connection-window-size", "4G", "65535..2147483647"),
    ("--max-header-list-size", "0", "4096..1048576"),
]
USAGE = 2  # the exit code of input the operator must change, from any command


def error_line(result: subprocess.CompletedProcess[str], hint: bool = False) -> str:
    """The one error line (plus, for argument errors, the hint); no usage, no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    assert "listening on" not in result.stdout
    assert lines and lines[0].startswith("h2stream: error: "), result.stderr
    assert lines[1:] == (["try 'h2stream serve --help'"] if hint else []), result.stderr
    return lines[0]


def toml_file(tmp_path: Path, body: str) -> Path:
    config = tmp_path / "h2stream.toml"
    config.write_text(f'root = "{tmp_path}"\nbind = ["127.0.0.1:0"]\n{body}\n')
    return config


@pytest.mark.parametrize(("flag", "value", "shown"), ACCEPTED_BEFORE)
def test_an_out_of_range_value_stops_serve_at_once(
    tmp_path: Path, flag: str, value: str, shown: str
) -> None:
    result = run_h2stream("serve", str(tmp_path), "--bind", "127.0.0.1:0", flag, value, timeout=10)
    assert result.returncode == USAGE
    line = error_line(result, hint=True)
    assert flag in line and shown in line, line


@pytest.mark.parametrize(("flag", "value", "shown"), ACCEPTED_BEFORE)
def test_check_config_refuses_what_serve_refuses(
    tmp_path: Path, flag: str, value: str, shown: str
) -> None:
    key = flag.removeprefix("--")
    config = toml_file(tmp_path, f'{key} = "{value}"')
    checked = run_h2stream("check-config", str(config))
    served = run_h2stream("serve", "--config", str(config), timeout=10)
    assert checked.returncode == served.returncode == USAGE
    assert error_line(checked) == error_line(served)
    assert key in error_line(checked) and shown in error_line(checked)


def test_the_environment_is_checked_like_the_flags(tmp_path: Path) -> None:
    result = run_h2stream(
        "serve", str(tmp_path), env={"H2STREAM_MAX_SEND_FRAME_SIZE": "0"}, timeout=10
    )
    assert result.returncode == USAGE
    line = error_line(result)
    assert "H2STREAM_MAX_SEND_FRAME_SIZE" in line and "1024..16777215" in line


def test_options_that_bound_each_other_are_checked_together(tmp_path: Path) -> None:
    result = run_h2stream(
        "serve", str(tmp_path), "--bind", "127.0.0.1:9", "--metrics-bind", "127.0.0.1:9"
    )
    assert result.returncode == USAGE
    assert "also a --bind address" in error_line(result)


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize(
    ("options", "wanted"),
    [
        (["--access-log", "/nonexistent/dir/a.log"], "its directory does not exist"),
        (["--access-log", "{tmp}"], "is a directory"),
        (["--certfile", "/nonexistent/cert.pem", "--keyfile", "/nonexistent/key.pem"], "no such"),
        (["--pid-file", "/nonexistent/dir/h2stream.pid"], "its directory does not exist"),
    ],
    ids=["access log directory", "access log is a directory", "certificate", "pid file"],
)
def test_files_the_config_names_are_checked_before_serving(
    tmp_path: Path, options: list[str], wanted: str
) -> None:
    options = [option.replace("{tmp}", str(tmp_path)) for option in options]
    served = run_h2stream("serve", str(tmp_path), "--bind", "127.0.0.1:0", *options, timeout=10)
    assert served.returncode == USAGE
    assert wanted in error_line(served)
    pairs = zip(options[::2], options[1::2], strict=True)
    config = toml_file(tmp_path, "\n".join(f'{f.removeprefix("--")} = "{v}"' for f, v in pairs))
    checked = run_h2stream("check-config", str(config))
    assert checked.returncode == USAGE
    assert wanted in error_line(checked)


def test_an_access_log_that_cannot_be_opened_is_one_line_too(tmp_path: Path) -> None:
    """The directory exists, the file cannot be made in it (procfs): found only by opening,
    at the start, before the listeners."""
    served = run_h2stream(
        "serve", str(tmp_path), "--bind", "127.0.0.1:0", "--access-log", "/proc/self/a.log"
    )
    assert served.returncode == 1  # a start that failed, not input to change
    assert "access log '/proc/self/a.log'" in error_line(served)


# --------------------------------------------------------------------------- arguments


def test_an_argument_error_is_one_line_and_a_hint(tmp_path: Path) -> None:
    result = run_h2stream("serve", str(tmp_path), "--no-such-flag")
    assert result.returncode == USAGE
    assert "--no-such-flag" in error_line(result, hint=True)


def test_a_bad_root_exits_alike_from_serve_and_check_config(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    served = run_h2stream("serve", str(missing), "--bind", "127.0.0.1:0")
    config = tmp_path / "root.toml"
    config.write_text(f'root = "{missing}"\n')
    checked = run_h2stream("check-config", str(config))
    assert served.returncode == checked.returncode == USAGE
    assert error_line(served) == error_line(checked)


def test_an_app_without_that_attribute_is_named_so(tmp_path: Path) -> None:
    served = run_h2stream("serve", "--bind", "127.0.0.1:0", "--app", "json:nosuch", timeout=10)
    line = error_line(served)
    assert "no attribute 'nosuch' in module 'json'" in line, line
    config = tmp_path / "app.toml"
    config.write_text(f'root = "{tmp_path}"\napp = "json:nosuch"\n')
    checked = run_h2stream("check-config", str(config))
    assert checked.returncode == served.returncode != 0
    assert error_line(checked) == line
