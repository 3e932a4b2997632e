"""The command line as an operator meets it: help, errors that explain themselves, start-up.

Argument errors print one clear line ("h2stream: error: ..."; argparse's own checks add a
hint, "try 'h2stream serve --help'", never the usage of every option), exit non-zero and never
show a traceback.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import signal
import socket
import subprocess
import sysconfig
from collections.abc import Callable
from pathlib import Path

import pytest
from support.commands import REPO, run_h2stream
from support.curl import curl_status, run_curl
from support.files import SIZES
from support.servers import ServerProcess

FLAGS = [
    "--bind",
    "--certfile",
    "--keyfile",
    "--self-signed",
    "--no-sendfile",
    "--loop",
    "--max-concurrent-streams",
    "--graceful-timeout",
    "--log-level",
]


def assert_one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """Non-zero exit, no traceback, nothing served, and one error line on stderr
    ("h2stream: error: ..."), alone or followed by a hint ("try 'h2stream serve --help'")."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "listening on" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and re.match(r"^h2stream: error: \S", lines[0]), result.stderr
    assert len(lines) <= 2, result.stderr
    if len(lines) == 2:
        assert re.fullmatch(r"try 'h2stream( [a-z-]+)? --help'", lines[1]), result.stderr
    return lines[0]


# --------------------------------------------------------------------------- help


def test_help_lists_every_flag() -> None:
    result = run_h2stream("serve", "--help")
    assert result.returncode == 0, result.stderr
    for flag in FLAGS:
        assert flag in result.stdout, flag
    assert "ROOT" in result.stdout.upper()
    for choice in ("auto", "uvloop", "asyncio"):
        assert choice in result.stdout


def test_top_level_help_and_version() -> None:
    result = run_h2stream("--help")
    assert result.returncode == 0
    assert "serve" in result.stdout
    version = run_h2stream("--version")
    assert version.returncode == 0
    assert version.stdout.startswith("h2stream ")


def test_console_script_if_installed() -> None:
    script = shutil.which("h2stream")
    if script is None:
        # Installed into this interpreter's scripts directory, which is not on PATH (a venv
        # not activated), is not the same as not installed: say which.
        beside = Path(sysconfig.get_path("scripts")) / "h2stream"
        if beside.exists():
            pytest.skip(f"the h2stream console script is installed as {beside}, not on PATH")
        pytest.skip("the h2stream console script is not installed (pip install -e .)")
    result = subprocess.run(
        [script, "serve", "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0
    for flag in FLAGS:
        assert flag in result.stdout


# --------------------------------------------------------------------------- errors


def test_missing_root(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    line = assert_one_error_line(run_h2stream("serve", str(missing), "--bind", "127.0.0.1:0"))
    assert str(missing) in line


def test_root_is_a_file(files_root: Path) -> None:
    line = assert_one_error_line(
        run_h2stream("serve", str(files_root / "hello.txt"), "--bind", "127.0.0.1:0")
    )
    assert "hello.txt" in line


@pytest.mark.parametrize(
    "bind",
    ["nonsense", "127.0.0.1:99999", "127.0.0.1:", ":8080", "127.0.0.1:http", "[::1]8080"],
)
def test_bad_bind(files_root: Path, bind: str) -> None:
    line = assert_one_error_line(run_h2stream("serve", str(files_root), "--bind", bind))
    assert "bind" in line.lower()


def test_unassignable_bind_address(files_root: Path) -> None:
    # TEST-NET-1 (RFC 5737): never a local address, so bind fails without any DNS lookup.
    result = run_h2stream("serve", str(files_root), "--bind", "192.0.2.1:0")
    assert_one_error_line(result)


def test_unreadable_cert(files_root: Path) -> None:
    result = run_h2stream(
        "serve", str(files_root), "--bind", "127.0.0.1:0",
        "--certfile", "/nonexistent/cert.pem", "--keyfile", "/nonexistent/key.pem",
    )  # fmt: skip
    line = assert_one_error_line(result)
    assert "/nonexistent" in line


def test_cert_that_is_not_a_cert(files_root: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate\n")
    result = run_h2stream(
        "serve", str(files_root), "--bind", "127.0.0.1:0",
        "--certfile", str(bogus), "--keyfile", str(bogus),
    )  # fmt: skip
    assert_one_error_line(result)


def test_certfile_without_keyfile(files_root: Path) -> None:
    result = run_h2stream(
        "serve", str(files_root), "--bind", "127.0.0.1:0", "--certfile", "/nonexistent/c.pem"
    )
    assert_one_error_line(result)


def test_port_in_use(files_root: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_h2stream("serve", str(files_root), "--bind", f"127.0.0.1:{port}")
    line = assert_one_error_line(result)
    assert str(port) in line


def test_second_bind_in_use_releases_the_first(files_root: Path) -> None:
    """Failing on the second listener is still one line, and nothing is left listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_h2stream(
            "serve", str(files_root), "--bind", "127.0.0.1:0", "--bind", f"127.0.0.1:{port}"
        )
    assert_one_error_line(result)


@pytest.mark.parametrize(
    "args",
    [
        ["--max-concurrent-streams", "0"],
        ["--max-concurrent-streams", "many"],
        ["--graceful-timeout", "-1"],
        ["--graceful-timeout", "soon"],
        ["--loop", "tokio"],
        ["--log-level", "chatty"],
        ["--no-such-flag"],
    ],
)
def test_argparse_errors(files_root: Path, args: list[str]) -> None:
    result = run_h2stream("serve", str(files_root), "--bind", "127.0.0.1:0", *args)
    assert result.returncode == 2
    assert_one_error_line(result)


def test_no_command() -> None:
    result = run_h2stream()
    assert result.returncode == 2
    assert_one_error_line(result)


# --------------------------------------------------------------------------- start-up


def test_self_signed_starts_and_serves(tls_server: ServerProcess) -> None:
    assert tls_server.url.startswith("https://127.0.0.1:")
    code, body, status = curl_status(f"{tls_server.url}/hello.txt", "-k", "--http2")
    assert code == 0
    assert status == "200 2"
    assert body == b"hello, h2stream\n"


def test_plain_start_prints_h2c_listener(h2c_server: ServerProcess) -> None:
    assert h2c_server.url.startswith("http://127.0.0.1:")
    code, body, status = curl_status(f"{h2c_server.url}/hello.txt", "--http2-prior-knowledge")
    assert (code, status, body) == (0, "200 2", b"hello, h2stream\n")


def test_every_bind_listens_and_is_announced(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory("--bind", "127.0.0.1:0", "--bind", "127.0.0.1:0", listeners=2)
    urls = server.urls
    assert len(urls) == 2, (urls, server.log_text())
    assert urls[0] != urls[1]
    for url in urls:
        code, body, status = curl_status(f"{url}/hello.txt", "--http2-prior-knowledge")
        assert (code, status, body) == (0, "200 2", b"hello, h2stream\n")
    assert server.stop() == 0
    assert "Traceback" not in server.log_text()


def test_ipv6_bind_if_available(server_factory: Callable[..., ServerProcess]) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    server = server_factory("--bind", "[::1]:0")
    urls = server.urls
    assert urls and urls[0].startswith("http://[::1]:"), server.log_text()
    code, body, status = curl_status(f"{urls[0]}/hello.txt", "--http2-prior-knowledge")
    assert (code, status, body) == (0, "200 2", b"hello, h2stream\n")


def test_a_host_name_binds_through_the_resolver(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """A numeric host is bound by the server itself, a name by the event loop's resolver."""
    server = server_factory("--bind", "localhost:0")
    urls = server.urls
    assert urls and re.match(r"http://(127\.0\.0\.1|\[::1\]):\d+$", urls[0]), server.log_text()
    code, body, status = curl_status(f"{urls[0]}/hello.txt", "--http2-prior-knowledge")
    assert (code, status, body) == (0, "200 2", b"hello, h2stream\n")


def test_a_taken_address_is_a_clear_error(files_root: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_h2stream("serve", str(files_root), "--bind", f"127.0.0.1:{port}")
    assert done.returncode == 1, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr


def test_default_root_is_the_working_directory(files_root: Path) -> None:
    """``h2stream serve`` with no ROOT serves the current directory."""
    server = ServerProcess(None, cwd=files_root, env={"PYTHONPATH": str(REPO)})
    try:
        url = server.url
        code, body, status = curl_status(f"{url}/hello.txt", "--http2-prior-knowledge")
        assert (code, status, body) == (0, "200 2", b"hello, h2stream\n")
    finally:
        server.stop()
    assert server.proc.returncode == 0


@pytest.mark.parametrize(
    "flags",
    [
        ["--no-sendfile"],
        ["--loop", "asyncio"],
        ["--loop", "uvloop", "--max-concurrent-streams", "8", "--log-level", "WARNING"],
    ],
    ids=["no-sendfile", "asyncio", "uvloop"],
)
def test_flags_serve_correct_bodies(
    server_factory: Callable[..., ServerProcess], digests: dict[str, str], flags: list[str]
) -> None:
    server = server_factory(*flags)
    for name in ("f16385.bin", "mib.bin"):
        result = run_curl("--http2-prior-knowledge", f"{server.url}/{name}")
        assert result.returncode == 0, result.stderr
        assert len(result.stdout) == SIZES[name]
        assert hashlib.sha256(result.stdout).hexdigest() == digests[name]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_idle_server_stops_cleanly(
    server_factory: Callable[..., ServerProcess], signum: int
) -> None:
    server = server_factory("--bind", "127.0.0.1:0")
    assert len(server.urls) == 1, server.log_text()
    server.proc.send_signal(signum)
    assert server.proc.wait(15) == 0
    assert "Traceback" not in server.log_text()
