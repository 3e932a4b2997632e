"""The reference deployment: HAProxy (Debian's package) in front of two h2stream nodes.

HAProxy runs ``examples/haproxy.cfg`` itself, its values set through the environment: TLS with
ALPN h2 on a loopback socket this test binds (port 0, handed over as ``fd@N``), h2c to two
h2stream nodes (``proto h2``), health checks on each node's ``/readyz``. One node is drained
with SIGTERM while h2load downloads through HAProxy: no request fails, and the traffic moves
to the other node.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.commands import REPO, require
from support.edge import HAProxyProcess
from support.h2load import H2load, assert_all_succeeded
from support.metrics import metrics_url, served_2xx
from support.polling import wait_until
from support.servers import ServerProcess

from h2stream.runtime.tls import make_self_signed

CONFIG = REPO / "examples" / "haproxy.cfg"


@pytest.fixture
def deployment(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> Iterator[tuple[HAProxyProcess, list[ServerProcess], list[str], int]]:
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
    env = {
        "H2STREAM_FRONTEND": f"fd@{frontend.fileno()}",
        "H2STREAM_CERT": str(pem),
        "H2STREAM_CHECK_INTER": "100ms",
    }
    for index, (node, check) in enumerate(zip(nodes, checks, strict=True), start=1):
        env[f"H2STREAM_NODE{index}"] = f"127.0.0.1:{node.port}"
        env[f"H2STREAM_CHECK{index}"] = check.rsplit(":", 1)[1]
    haproxy = HAProxyProcess(CONFIG, tmp_path, (frontend.fileno(),), env)
    frontend.close()  # HAProxy holds it now
    try:
        up = wait_until(lambda: haproxy.states("h2stream") == {"node1": "UP", "node2": "UP"}, 15)
        assert up, f"nodes not UP: {haproxy.states('h2stream')}\n{haproxy.stop()}"
        yield haproxy, nodes, checks, port
    finally:
        print(haproxy.stop())


def test_draining_a_node_behind_haproxy_fails_no_request(
    deployment: tuple[HAProxyProcess, list[ServerProcess], list[str], int],
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
    assert wait_until(lambda: haproxy.states("h2stream").get("node1", "").startswith("DOWN"), 5), (
        haproxy.states("h2stream")
    )
    assert short.running(), "the load ended before node1 began to drain: not a test"
    assert node1.wait(30) == 0
    after_drain = served_2xx(check2)
    short_result = short.result()
    long_result = long.result()
    floods = [line for node in (node1, node2) for line in node.stderr_lines if "flood" in line]
    assert not floods, f"a node took HAProxy's traffic for a flood (limits.py): {floods}"
    assert_all_succeeded(short_result)
    assert_all_succeeded(long_result, expected=4)
    # The traffic moved: node2 serves what comes after node1 left (however long its drain
    # took, which on a busy machine can outlast the short load).
    assert_all_succeeded(H2load("-n", "20", "-c", "2", f"{url}/mib.bin", timeout=60).result(), 20)
    assert served_2xx(check2) >= after_drain + 20
    assert haproxy.states("h2stream")["node2"].startswith("UP")
    assert node2.proc.poll() is None
