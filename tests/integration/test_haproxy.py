"""The reference deployment: HAProxy (Debian's package) in front of two h2stream nodes.

HAProxy runs ``examples/haproxy.cfg`` itself, its values set through the environment: TLS with
ALPN h2 on a loopback socket this test binds (port 0, handed over as ``fd@N``), h2c to two
h2stream nodes (``proto h2``), health checks on each node's ``/readyz``. One node is drained
with SIGTERM while h2load downloads through HAProxy: no request fails, and the traffic moves
to the other node.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.commands import REPO, require
from support.h2load import H2load, assert_all_succeeded
from support.metrics import metrics_url, served_2xx
from support.polling import wait_until
from support.servers import ServerProcess

from h2stream.runtime.tls import make_self_signed

CONFIG = REPO / "examples" / "haproxy.cfg"


class HAProxy:
    """HAProxy in the foreground (``-db``), stopped by its pid."""

    def __init__(self, env: dict[str, str], pass_fds: tuple[int, ...], stats_socket: Path) -> None:
        self.stats_socket = stats_socket
        self.proc = subprocess.Popen(
            [require("haproxy"), "-db", "-f", str(CONFIG)],
            env={**os.environ, **env},
            pass_fds=pass_fds,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
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

    def server_states(self) -> dict[str, str]:
        """Backend server name -> status (UP, DOWN, ...), from ``show stat`` (CSV)."""
        if not self.stats_socket.exists():
            return {}
        try:
            lines = self.command("show stat").splitlines()
        except OSError:
            return {}
        if not lines:
            return {}
        header = lines[0].lstrip("# ").split(",")
        states = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("pxname") == "h2stream" and row.get("svname") not in ("BACKEND", None):
                states[row["svname"]] = row.get("status", "")
        return states

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        output, _ = self.proc.communicate(timeout=10)
        return output


@pytest.fixture
def deployment(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> Iterator[tuple[HAProxy, list[ServerProcess], list[str], int]]:
    require("haproxy")
    require("openssl")
    nodes = [
        server_factory("--metrics-bind", "127.0.0.1:0", "--graceful-timeout", "20")
        for _ in range(2)
    ]
    checks = [metrics_url(node) for node in nodes]
    certfile, keyfile = make_self_signed(str(tmp_path))
    pem = tmp_path / "haproxy.pem"
    pem.write_text(Path(certfile).read_text() + Path(keyfile).read_text())
    frontend = socket.socket()
    frontend.bind(("127.0.0.1", 0))
    frontend.listen(1024)
    port = frontend.getsockname()[1]
    stats_socket = tmp_path / "haproxy.sock"
    env = {
        "H2STREAM_FRONTEND": f"fd@{frontend.fileno()}",
        "H2STREAM_CERT": str(pem),
        "H2STREAM_STATS_SOCKET": str(stats_socket),
        "H2STREAM_CHECK_INTER": "100ms",
    }
    for index, (node, check) in enumerate(zip(nodes, checks, strict=True), start=1):
        env[f"H2STREAM_NODE{index}"] = f"127.0.0.1:{node.port}"
        env[f"H2STREAM_CHECK{index}"] = check.rsplit(":", 1)[1]
    haproxy = HAProxy(env, (frontend.fileno(),), stats_socket)
    frontend.close()  # HAProxy holds it now
    try:
        up = wait_until(lambda: haproxy.server_states() == {"node1": "UP", "node2": "UP"}, 15)
        assert up, f"nodes not UP: {haproxy.server_states()}\n{haproxy.stop()}"
        yield haproxy, nodes, checks, port
    finally:
        print(haproxy.stop())


def test_draining_a_node_behind_haproxy_fails_no_request(
    deployment: tuple[HAProxy, list[ServerProcess], list[str], int],
) -> None:
    require("h2load")
    haproxy, (node1, node2), (check1, check2), port = deployment
    url = f"https://127.0.0.1:{port}"
    # Many 1 MiB downloads for 5 s over 4 client connections, and four 100 MiB downloads
    # (long, some of them on node1 when it drains).
    short = H2load("-D", "5", "-c", "4", "-m", "4", f"{url}/mib.bin", timeout=60)
    long = H2load("-n", "4", "-c", "2", "-m", "2", f"{url}/f100m.bin", timeout=60)
    assert wait_until(lambda: served_2xx(check1) > 0 and served_2xx(check2) > 0, 5), (
        "HAProxy did not spread the load over both nodes"
    )
    time.sleep(0.5)
    node1.signal(signal.SIGTERM)
    # HAProxy sees the drain on /readyz (503) and takes node1 out.
    assert wait_until(lambda: haproxy.server_states().get("node1", "").startswith("DOWN"), 5), (
        haproxy.server_states()
    )
    assert node1.wait(30) == 0
    after_drain = served_2xx(check2)
    assert short.running(), "the load ended before node1 was gone: not a test"
    short_result = short.result()
    long_result = long.result()
    floods = [line for node in (node1, node2) for line in node.stderr_lines if "flood" in line]
    assert not floods, f"a node took HAProxy's traffic for a flood (limits.py): {floods}"
    assert_all_succeeded(short_result)
    assert_all_succeeded(long_result, expected=4)
    # The traffic moved: node2 served everything after node1 left.
    assert served_2xx(check2) > after_drain
    assert haproxy.server_states()["node2"].startswith("UP")
    assert node2.proc.poll() is None
