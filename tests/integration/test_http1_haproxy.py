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
from support.edge import HAProxyProcess
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


def test_haproxy_http1_backends_with_httpchk(
    server_factory: Callable[..., ServerProcess], tmp_path: Path, digests: dict[str, str]
) -> None:
    nodes = [server_factory(), server_factory()]
    frontend = socket.socket()
    frontend.bind(("127.0.0.1", 0))
    frontend.listen(128)
    config = CONFIG.format(
        stats="{stats}", frontend=frontend.fileno(), port1=nodes[0].port, port2=nodes[1].port
    )
    haproxy = HAProxyProcess(config, tmp_path, (frontend.fileno(),))
    url = f"http://127.0.0.1:{frontend.getsockname()[1]}"
    try:
        up = wait_until(
            lambda: haproxy.states("nodes"), 15, 0.1, until=lambda s: list(s.values()) == ["UP"] * 2
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
        assert list(haproxy.states("nodes").values()) == ["UP", "UP"]
    finally:
        haproxy.stop()
        frontend.close()
