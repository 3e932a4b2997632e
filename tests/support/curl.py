"""curl, the one way the tests run it: :func:`curl_command` builds every command line
(silent, errors shown, bounded by ``--max-time``); the others run it for one purpose each."""

from __future__ import annotations

import subprocess
from typing import Any

from .commands import require
from .downloads import Fetched, HashedDownload

MAX_TIME = 30.0
# After the body, on stderr: the status code and HTTP version on a line of their own.
WRITE_STATUS = ("-w", "%{stderr}\n%{http_code} %{http_version}\n")


def curl_command(*args: str, max_time: float | None = MAX_TIME) -> list[str]:
    """``curl -s -S [--max-time N] ARGS``; ``max_time=None`` leaves curl unbounded (for a
    command the test bounds itself)."""
    command = [require("curl"), "-s", "-S"]
    if max_time is not None:
        command += ["--max-time", f"{max_time:g}"]
    return [*command, *args]


def run_curl(
    *args: str, max_time: float = MAX_TIME, text: bool = False, check: bool = False
) -> subprocess.CompletedProcess[Any]:
    """curl to its end, stdout and stderr captured (bytes, or str with ``text``)."""
    return subprocess.run(
        curl_command(*args, max_time=max_time),
        capture_output=True,
        text=text,
        timeout=max_time + 10,
        check=check,
    )


def _status_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    return lines[-1] if lines else ""


def curl_status(url: str, *options: str) -> tuple[int, bytes, str]:
    """(curl's exit code, the body, "code version") of a GET of ``url``."""
    result = run_curl(*WRITE_STATUS, *options, url)
    return result.returncode, result.stdout, _status_line(result.stderr.decode())


def curl_fetch(url: str, *options: str, max_time: float = MAX_TIME) -> tuple[Fetched, str, str]:
    """GET ``url`` with the body hashed as it streams; the hashed body, the status code and
    the HTTP version."""
    command = curl_command(*WRITE_STATUS, *options, url, max_time=max_time)
    fetched = HashedDownload(command, max_time + 10).fetched()
    code, _, version = _status_line(fetched.stderr).partition(" ")
    return fetched, code, version


def curl_download(url: str, *options: str, max_time: float = 90.0) -> HashedDownload:
    """A download in the background, hashed as it streams, so the test can act meanwhile."""
    return HashedDownload(curl_command(*options, url, max_time=max_time), max_time + 30)


def curl_headers(*args: str, timeout: float = 60) -> tuple[bytes, dict[str, str]]:
    """A request over h2c with prior knowledge: the raw body, and the response headers (names
    in lower case; the status as ``:status``). A failed transfer raises."""
    command = curl_command("--http2-prior-knowledge", "-D", "/dev/stderr", *args, max_time=timeout)
    done = subprocess.run(command, capture_output=True, timeout=timeout + 10, check=True)
    headers: dict[str, str] = {}
    for line in done.stderr.decode("latin-1").splitlines():
        if line.startswith("HTTP/"):
            headers[":status"] = line.split()[1]
        else:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
    return done.stdout, headers
