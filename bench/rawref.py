"""Raw-socket references: the machine's loopback ceiling from plain Python, no HTTP/2.

Run as a script (stdlib only, so it can run by path): ``python bench/rawref.py MODE FILE PORT``
listens on 127.0.0.1:PORT and, for each client that sends one byte, writes FILE and closes.
Modes, matching the loopback figures in the design notes:

- ``sendfile``: one os.sendfile of the whole file (looped only on partial sends).
- ``frames``: per 16 KiB, a 9-byte DATA-frame-like header by send(MSG_MORE), then os.sendfile
  of the 16 KiB payload: the shape of h2stream's zero-copy path.
- ``copy``: os.preadv of 256 KiB into one reused buffer, then sendall.

``measure()`` is the discarding reader the harness uses: it times from request to EOF.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import time

MODES = ("sendfile", "frames", "copy")
FRAME = 16 * 1024
COPY_CHUNK = 256 * 1024


def _send_whole(conn: socket.socket, fd: int, size: int) -> None:
    offset = 0
    while offset < size:
        offset += os.sendfile(conn.fileno(), fd, offset, size - offset)


def _send_frames(conn: socket.socket, fd: int, size: int) -> None:
    out = conn.fileno()
    offset = 0
    while offset < size:
        n = min(FRAME, size - offset)
        # length (24 bit), type DATA, no flags, stream 1: the bytes an h2 server would send.
        header = struct.pack(">I", n)[1:] + b"\x00\x00" + struct.pack(">I", 1)
        conn.send(header, socket.MSG_MORE)
        end = offset + n
        while offset < end:
            offset += os.sendfile(out, fd, offset, end - offset)


def _send_copy(conn: socket.socket, fd: int, size: int) -> None:
    buf = bytearray(COPY_CHUNK)
    view = memoryview(buf)
    offset = 0
    while offset < size:
        n = os.preadv(fd, [buf], offset)
        if n <= 0:
            break
        conn.sendall(view[: min(n, size - offset)])
        offset += n


SENDERS = {"sendfile": _send_whole, "frames": _send_frames, "copy": _send_copy}


def serve(mode: str, path: str, port: int) -> None:
    send = SENDERS[mode]
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(8)
        while True:
            conn, _ = listener.accept()
            with conn:
                # A readiness probe connects and closes without asking: send nothing then.
                if not conn.recv(1):
                    continue
                try:
                    send(conn, fd, size)
                except OSError:
                    continue


def measure(port: int, size: int, timeout: float) -> float:
    """Ask for the file, read and drop it; return MiB/s of file bytes (headers not counted)."""
    buf = bytearray(1 << 20)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        deadline = time.monotonic() + timeout
        t0 = time.perf_counter()
        s.sendall(b"g")
        got = 0
        while True:
            n = s.recv_into(buf)
            if n == 0:
                break
            got += n
            if time.monotonic() > deadline:
                raise TimeoutError(f"reader passed {timeout:.0f}s")
        elapsed = time.perf_counter() - t0
    if got < size:
        raise ConnectionError(f"got {got} bytes of {size}")
    return size / elapsed / (1 << 20)


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2], int(sys.argv[3]))
