"""Commands the tests run: the real clients they need (:func:`require`), and h2stream's own
command line, run to completion (:func:`run_h2stream`) or as argument lists for a launcher."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent


def require(command: str) -> str:
    """The path of an installed client; in CI a missing one fails the test, elsewhere skips it."""
    path = shutil.which(command)
    if path is None and os.environ.get("CI"):
        pytest.fail(f"{command} is not installed: CI must install it (tools/run-tests)")
    if path is None:
        pytest.skip(f"{command} is not installed (tools/run-tests installs it)")
    return path


def h2stream_command(*args: str) -> list[str]:
    """``python -m h2stream ARGS`` as an argument list."""
    return [sys.executable, "-m", "h2stream", *args]


def run_h2stream(
    *args: str, timeout: float = 30, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m h2stream ARGS`` to its end, output captured; a command that does not exit
    in time (a server that started instead of failing) fails the test and is killed."""
    try:
        return subprocess.run(
            h2stream_command(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
            env={**os.environ, **(env or {})},
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"h2stream {' '.join(args)} did not exit within {timeout} s: {exc.stdout!r}")
