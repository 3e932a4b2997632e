"""HAProxy (Debian's package) with HTTP/1.1 backends: two h2stream nodes reached over HTTP/1.1
(no ``proto h2``), health-checked with ``option httpchk`` on their data port; downloads and
h2load --h1 through it all succeed, and both nodes serve."""

from __future__ import annotations

import hashlib
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import requests
from support.commands import require
from support.polling import wait_until
from support.servers import ServerProcess

CONFIG = """
global
    stats socket {stats} mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend edge
    bind fd@{frontend}
    default_backend nodes
backend nodes
    balance roundrobin
    option httpchk
    http-check send meth GET uri /hello.txt ver HTTP/1.1 hdr host localhost
    http-check expect string h2stream
    server n1 127.0.0.1:{port1} check inter 200ms
    server n2 127.0.0.1:{port2} check inter 200ms
"""


def states(stats_socket: Path) -> dict[str, str]:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(stats_socket))
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    except OSError:
        return {}
    lines = data.decode().splitlines()
    if not lines:
        return {}
    header = lines[0].lstrip("# ").split(",")
    found = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("pxname") == "nodes" and row.get("svname") in ("n1", "n2"):
            found[row["svname"]] = row.get("status", "")
    return found


def test_haproxy_http1_backends_with_httpchk(
    server_factory: Callable[..., ServerProcess], tmp_path: Path, digests: dict[str, str]
) -> None:
    nodes = [server_factory(), server_factory()]
    frontend = socket.socket()
    frontend.bind(("127.0.0.1", 0))
    frontend.listen(128)
    stats_socket = tmp_path / "haproxy.sock"
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        CONFIG.format(
            stats=stats_socket,
            frontend=frontend.fileno(),
            port1=nodes[0].port,
            port2=nodes[1].port,
        )
    )
    proc = subprocess.Popen(
        [require("haproxy"), "-db", "-f", str(config)],
        pass_fds=(frontend.fileno(),),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{frontend.getsockname()[1]}"
    try:
        up = wait_until(
            lambda: states(stats_socket), 15, 0.1, until=lambda s: list(s.values()) == ["UP"] * 2
        )
        assert list(up.values()) == ["UP", "UP"], up
        with requests.Session() as session:
            for _ in range(4):
                response = session.get(f"{url}/mib.bin", timeout=30)
                assert hashlib.sha256(response.content).hexdigest() == digests["mib.bin"]
        result = subprocess.run(
            [require("h2load"), "--h1", "-n", "1000", "-c", "4", f"{url}/kib.bin"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert "1000 succeeded, 0 failed, 0 errored" in result.stdout, result.stdout
        # Both nodes served through HAProxy (round robin), and passed every check.
        assert list(states(stats_socket).values()) == ["UP", "UP"]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        frontend.close()
