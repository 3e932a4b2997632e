"""``--pid-file``: the main process id, written atomically, removed on exit only if still ours."""

from __future__ import annotations

import contextlib
import os


class PidFileError(Exception):
    """The pid file cannot be written, or names a running h2stream; worded for the operator."""


def _read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except (FileNotFoundError, IsADirectoryError):
        return None
    except OSError as exc:
        raise PidFileError(f"--pid-file {path}: {exc.strerror or exc}") from None
    return int(text) if text.isdigit() else None


def _is_running_h2stream(pid: int) -> bool:
    """A live process whose command line names h2stream (a stale file's pid may be reused)."""
    import psutil  # here, not at import: about 1 MiB of a worker's memory for a rare check

    try:
        return any("h2stream" in part for part in psutil.Process(pid).cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def write_pid_file(path: str) -> None:
    existing = _read_pid(path)
    if existing is not None and existing != os.getpid() and _is_running_h2stream(existing):
        raise PidFileError(f"--pid-file {path}: h2stream is already running as pid {existing}")
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        with open(temporary, "w") as f:
            f.write(f"{os.getpid()}\n")
        # Atomic: a reader (systemd, kill -HUP $(cat ...)) never sees an empty file.
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise PidFileError(f"--pid-file {path}: {exc.strerror or exc}") from None


def remove_pid_file(path: str) -> None:
    with contextlib.suppress(OSError, ValueError, PidFileError):
        if _read_pid(path) == os.getpid():
            os.unlink(path)
