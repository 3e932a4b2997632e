"""Edge deployment helpers: raw connections that start with a PROXY header, a paced flood of
connections from many claimed addresses, HAProxy from a config text, and the edge counters
read from a server's /metrics."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import time
from pathlib import Path

from h2stream.core.proxy_header import encode_v1, encode_v2

from .commands import require
from .metrics import scrape

# SO_LINGER 0: close() sends RST, so a flood of short connections leaves no TIME_WAIT behind
# (100,000 of them would take every ephemeral port of 127.0.0.1).
RESET_ON_CLOSE = struct.pack("ii", 1, 0)


def header(source: str, port: int, v2: bool = True) -> bytes:
    destination = "::1" if ":" in source else "127.0.0.1"
    return (encode_v2 if v2 else encode_v1)(source, destination, 40000, port)


def proxied(port: int, source: str, payload: bytes = b"", v2: bool = True) -> socket.socket:
    """A connection to 127.0.0.1:``port`` claiming to come from ``source``."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(header(source, port, v2) + payload)
    return sock


def read_all(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything until the server closes (or ``timeout``)."""
    sock.settimeout(timeout)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (TimeoutError, ConnectionResetError):
        pass
    return b"".join(chunks)


def closed_by_server(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True once the server closed the connection without sending anything."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def accept_queue(port: int) -> int:
    """Connections waiting in the accept queue of the listener on ``port`` (/proc/net/tcp)."""
    suffix = f":{port:04X}"
    with open("/proc/net/tcp") as table:
        for line in table:
            fields = line.split()
            if fields[1].endswith(suffix) and fields[3] == "0A":  # LISTEN
                return int(fields[4].split(":")[1], 16)
    return 0


def flood_addresses(port: int, count: int, first: int = 0) -> None:
    """``count`` connections, each from another claimed address (10.x.y.z), each sending only
    its PROXY header and then reset. Paced by the listener's accept queue so that it never
    overflows (a dropped SYN costs a 1 s retransmission)."""
    for n in range(first, first + count):
        if n % 256 == 0:
            deadline = time.monotonic() + 10
            while accept_queue(port) > 256 and time.monotonic() < deadline:
                time.sleep(0.001)
        sock = socket.socket()
        try:
            sock.connect(("127.0.0.1", port))
            sock.send(header(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
        finally:
            sock.close()


class EdgeCounters:
    """The edge families of a server's /metrics."""

    def __init__(self, base: str) -> None:
        self.base = base

    def read(self) -> dict[str, dict[str, float]]:
        got = scrape(self.base)
        return {
            "limits": got.by_label("h2stream_limit_events_total", "kind"),
            "answers": got.by_label("h2stream_refusal_answers_total", "answer"),
            "headers": got.by_label("h2stream_proxy_headers_total", "version"),
            "errors": got.by_label("h2stream_proxy_header_errors_total", "reason"),
            "table": {
                "entries": got.value("h2stream_client_table_entries"),
                "evictions": got.value("h2stream_client_table_evictions_total"),
                "accepted": got.value("h2stream_connections_accepted_total"),
                "active": got.value("h2stream_connections_active"),
            },
        }


class HAProxyProcess:
    """HAProxy in the foreground (``-db``), stopped by its pid, with its admin socket.

    ``config`` is a config text (``{stats}`` stands for the admin socket's path) or the path of
    a config file that reads the socket's path from ``H2STREAM_STATS_SOCKET`` and its other
    values from ``env`` (examples/haproxy.cfg)."""

    def __init__(
        self,
        config: str | Path,
        tmp_path: Path,
        pass_fds: tuple[int, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.stats_socket = tmp_path / "haproxy.sock"
        if isinstance(config, Path):
            path = config
        else:
            path = tmp_path / "haproxy.cfg"
            path.write_text(config.replace("{stats}", str(self.stats_socket)))
        self.proc = subprocess.Popen(
            [require("haproxy"), "-db", "-f", str(path)],
            pass_fds=pass_fds,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "H2STREAM_STATS_SOCKET": str(self.stats_socket), **(env or {})},
        )

    def command(self, line: str) -> str:
        """One command on the admin socket (the stats CLI), its whole answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.stats_socket))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def states(self, backend: str) -> dict[str, str]:
        """Server name -> status (UP, DOWN...) of ``backend``, from ``show stat``."""
        try:
            lines = self.command("show stat").splitlines()
        except OSError:  # not listening yet, or gone
            return {}
        if not lines:
            return {}
        names = lines[0].lstrip("# ").split(",")
        found = {}
        for line in lines[1:]:
            row = dict(zip(names, line.split(","), strict=False))
            if row.get("pxname") == backend and row.get("svname") not in ("BACKEND", "FRONTEND"):
                found[row["svname"]] = row.get("status", "")
        return found

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        output, _ = self.proc.communicate(timeout=10)
        return output
