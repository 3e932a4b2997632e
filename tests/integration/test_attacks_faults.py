"""Faults: clients that vanish at every stage, files that change or fail under a stream.

Each case shows the stream or connection ends with the right error, the file's fd is closed,
nothing leaks (fds back to where they were, RSS flat), and the server keeps serving.

The failing read is real, without FUSE or a broken disk: the in-process server's file
descriptor is replaced (``dup2``) by one of ``/proc/self/mem``, whose reads at the small
offsets of a file fail with EIO, as a dying disk's would; ``sendfile`` from it fails too.
The unreadable file is real for a root server too: it runs without CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH (``setpriv``), so a mode-000 file is EACCES as for anyone else.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.attacks import MIB, Footprint, start
from support.clients import RawConnection, abort, fetch, tls_socket
from support.frames import (
    DATA,
    END_STREAM,
    INTERNAL_ERROR,
    PREFACE,
    continuation,
    data,
    headers,
    request_block,
    settings,
    window_update,
)
from support.servers import ServerProcess

ROUNDS = 10  # per stage
SIZE = 8 * MIB


@pytest.fixture
def own_root(tmp_path: Path) -> Path:
    """A ROOT these tests may delete from and truncate in (not the shared files_root)."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "hello.txt").write_bytes(b"hello\n")
    return root


def _write(path: Path, size: int) -> bytes:
    content = os.urandom(size)
    path.write_bytes(content)
    return content


# -- clients that disconnect -------------------------------------------------------------


def _during_preface(port: int) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(PREFACE[:12])
    abort(sock)


def _after_preface(port: int) -> None:
    conn = RawConnection(port)
    conn.close()


def _during_headers(port: int) -> None:
    conn = RawConnection(port, initial=headers(1, request_block("/f100m.bin"), end_headers=False))
    conn.send(continuation(1, b""))
    abort(conn.sock)


def _during_request_body(port: int) -> None:
    opening = headers(1, request_block("/upload", method="POST"), end_stream=False)
    conn = RawConnection(port, initial=opening + data(1, b"x" * 10000))
    conn.read(0.05)
    conn.close()


def _mid_download(port: int, rude: bool) -> None:
    big = settings({0x4: (1 << 31) - 1})
    conn = RawConnection(port, initial=big, connection_window=(1 << 31) - 1)
    conn.send(headers(1, request_block("/f100m.bin")))
    assert conn.until(lambda: len(conn.body(1)) >= MIB, 10)
    if rude:
        abort(conn.sock)
    else:
        conn.close()


def _tls_mid_download(port: int) -> None:
    sock = tls_socket(port)
    sock.sendall(PREFACE + settings({0x4: (1 << 31) - 1}) + window_update(0, (1 << 31) - 65536))
    sock.sendall(headers(1, request_block("/f100m.bin")))
    received = 0
    while received < MIB:
        chunk = sock.recv(1 << 16)
        assert chunk
        received += len(chunk)
    abort(sock)


STAGES: dict[str, tuple[tuple[str, ...], Callable[[int], None]]] = {
    "during_preface": ((), _during_preface),
    "after_preface": ((), _after_preface),
    "during_headers": ((), _during_headers),
    "during_request_body": ((), _during_request_body),
    "mid_sendfile_fin": ((), lambda port: _mid_download(port, rude=False)),
    "mid_sendfile_rst": ((), lambda port: _mid_download(port, rude=True)),
    "mid_copy_rst": (("--no-sendfile",), lambda port: _mid_download(port, rude=True)),
    "tls_mid_download_rst": (("--self-signed",), _tls_mid_download),
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_client_disconnects(
    stage: str, server_factory: Callable[..., Any], files_root: Path
) -> None:
    args, leave = STAGES[stage]
    tls = "--self-signed" in args
    server = server_factory(*args)
    if not tls:
        fetch(server.port, "/hello.txt")
    footprint = Footprint(server)
    for _ in range(ROUNDS):
        leave(server.port)
    if not tls:
        assert fetch(server.port, "/mib.bin") == (files_root / "mib.bin").read_bytes()
    # Every connection and every file it had open is closed again.
    footprint.assert_bounded(fd_slack=0)
    errors = [line for line in server.stderr_lines if "Traceback" in line or "ERROR" in line]
    assert not errors, "".join(server.stderr_lines[-20:])


# -- files that change under a stream ---------------------------------------------------------


def _deleted_fds(pid: int) -> list[str]:
    """The server's fds on unlinked files (psutil's open_files() leaves those out)."""
    found = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.endswith(" (deleted)"):
            found.append(target)
    return found


def _held_download(port: int, path: str) -> RawConnection:
    """A download stopped after the first 64 KiB window (the connection window is open)."""
    conn = RawConnection(port, connection_window=1 << 30)
    conn.send(headers(1, request_block(path)))
    assert conn.until(lambda: len(conn.body(1)) == 65535, 10)
    return conn


def test_file_deleted_mid_stream(server_factory: Callable[..., Any], own_root: Path) -> None:
    """POSIX keeps an unlinked file's data while it is open: the stream completes with the
    original bytes, and the fd is closed after it (no "(deleted)" file stays open)."""
    content = _write(own_root / "doomed.bin", SIZE)
    server, _ = start(server_factory, root=own_root)
    footprint = Footprint(server)
    conn = _held_download(server.port, "/doomed.bin")
    try:
        (own_root / "doomed.bin").unlink()
        assert _deleted_fds(server.pid), "the server should still hold the file"
        conn.send(window_update(1, SIZE))
        assert conn.until(lambda: len(conn.body(1)) == SIZE, 20)
        assert conn.body(1) == content
        last = [f for f in conn.frames if f.kind == DATA and f.stream_id == 1][-1]
        assert last.flags & END_STREAM
    finally:
        conn.close()
    footprint.assert_bounded()
    assert not _deleted_fds(server.pid)
    assert fetch(server.port, "/hello.txt") == b"hello\n"


@pytest.mark.parametrize("args", [(), ("--no-sendfile",)], ids=["sendfile", "copy"])
def test_file_truncated_mid_stream(
    args: tuple[str, ...], server_factory: Callable[..., Any], own_root: Path
) -> None:
    """A file cut short under a stream: the stream is reset (INTERNAL_ERROR) rather than ended
    as if complete, the fd is closed, the connection goes on."""
    content = _write(own_root / "shrinking.bin", SIZE)
    server, _ = start(server_factory, *args, root=own_root)
    footprint = Footprint(server)
    conn = _held_download(server.port, "/shrinking.bin")
    try:
        os.truncate(own_root / "shrinking.bin", 100_000)
        conn.send(window_update(1, SIZE))
        assert conn.until(lambda: 1 in conn.resets(), 20), "not reset"
        assert conn.resets()[1] == INTERNAL_ERROR
        # What arrived is the file's own bytes up to where it ended (the zero-copy path may
        # have zero-filled the rest of a frame already announced), never more.
        body = conn.body(1)
        assert len(body) >= 65535
        kept = min(len(body), 100_000)
        assert body[:kept] == content[:kept]
        assert not body[kept:].strip(b"\0"), "bytes beyond the end of the file"
        assert not any(f.flags & END_STREAM for f in conn.frames if f.stream_id == 1)
        conn.send(headers(3, request_block("/hello.txt")))
        assert conn.until(lambda: conn.body(3) == b"hello\n"), "the connection did not go on"
    finally:
        conn.close()
    footprint.assert_bounded()


def unprivileged_server(root: Path) -> ServerProcess:
    """The CLI as root without the capabilities that let root read any file."""
    drop = "-dac_override,-dac_read_search"
    return ServerProcess(root, wrapper=["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}"])


def test_unreadable_file_is_403(server_factory: Callable[..., Any], own_root: Path) -> None:
    _write(own_root / "locked.bin", 1000)
    os.chmod(own_root / "locked.bin", 0)
    # Root reads any file; a root server is started without the capabilities for that.
    privileged = os.geteuid() == 0
    server = unprivileged_server(own_root) if privileged else server_factory(root=own_root)
    try:
        fetch(server.port, "/hello.txt")
        footprint = Footprint(server)
        for _ in range(5):
            conn = RawConnection(server.port, initial=headers(1, request_block("/locked.bin")))
            try:
                assert conn.until(lambda c=conn: DATA in c.kinds(1), 10)
                assert conn.body(1) == b"forbidden\n"
            finally:
                conn.close()
        footprint.assert_bounded(fd_slack=0)
        assert fetch(server.port, "/hello.txt") == b"hello\n"
    finally:
        if privileged:
            server.stop()


# -- a read that fails: EIO ---------------------------------------------------------------------


def _fds_to(target: str) -> list[int]:
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == target:
                found.append(int(name))
        except OSError:
            pass
    return found


@pytest.mark.parametrize("sendfile", [True, False], ids=["sendfile", "copy"])
def test_failing_read_resets_the_stream(
    sendfile: bool, inprocess_factory: Callable[..., Any], own_root: Path
) -> None:
    _write(own_root / "failing.bin", SIZE)
    server = inprocess_factory(root=str(own_root), sendfile=sendfile)
    target = str(own_root / "failing.bin")
    conn = _held_download(server.port, "/failing.bin")
    mem = os.open("/proc/self/mem", os.O_RDONLY)
    try:
        held = _fds_to(target)
        assert len(held) == 1, held
        # From now on every read of that fd fails: EIO from pread/preadv, an error from
        # sendfile, at the offsets a body of this size reads.
        os.dup2(mem, held[0])
        conn.send(window_update(1, SIZE))
        assert conn.until(lambda: 1 in conn.resets(), 10), "the failing stream was not reset"
        assert conn.resets()[1] == INTERNAL_ERROR
        # The connection goes on, and the broken fd was closed with its stream.
        conn.send(headers(3, request_block("/hello.txt")))
        assert conn.until(lambda: conn.body(3) == b"hello\n"), "the connection did not go on"
        assert conn.goaway is None
        deadline = time.monotonic() + 5
        while len(_fds_to(f"/proc/{os.getpid()}/mem")) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _fds_to(f"/proc/{os.getpid()}/mem") == [mem], "the failing fd stayed open"
    finally:
        conn.close()
        os.close(mem)
