"""The PROXY protocol behind a real HAProxy (Debian's package), and against raw sockets.

HAProxy sends ``send-proxy-v2`` to h2c backends (``proto h2``) and ``send-proxy`` (v1) to
HTTP/1.1 backends, and health-checks the data port through the same header (LOCAL for v2).
Clients reach HAProxy from other loopback addresses (curl ``--interface 127.0.0.N``), so the
client address the node logs is not the address its TCP peer (HAProxy) has. Raw sockets send
every kind of bad header: each is closed without an answer and counted by reason.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.commands import require
from support.edge import EdgeCounters, HAProxyProcess, closed_by_server, proxied, read_all
from support.h2load import H2load, assert_all_succeeded
from support.metrics import metrics_url
from support.polling import wait_until
from support.servers import ServerProcess

from h2stream.core.proxy_header import V2_SIGNATURE, encode_v2

CONFIG = """
global
    stats socket {stats} mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout
frontend edge
    bind fd@%(frontend)d
    default_backend nodes
backend nodes
    balance roundrobin
    # One backend connection per client connection (HAProxy would otherwise share idle ones
    # among clients whose PROXY headers match), so per-client counts are the client's.
    http-reuse never
    option httpchk
    http-check send meth GET uri /hello.txt ver HTTP/1.1 hdr host localhost
    http-check expect status 200
%(servers)s
"""
GET = b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n"


def haproxy_config(frontend: int, ports: list[int], send: str, proto: str) -> str:
    servers = "\n".join(
        f"    server n{i} 127.0.0.1:{port} {send} {proto} check inter 100ms fall 2 rise 1"
        for i, port in enumerate(ports, start=1)
    )
    return CONFIG % {"frontend": frontend, "servers": servers}


@pytest.fixture
def edge_deployment(
    tmp_path: Path,
) -> Iterator[Callable[[list[ServerProcess], str, str], tuple[HAProxyProcess, int]]]:
    """HAProxy in front of ``nodes`` with ``send-proxy``/``send-proxy-v2`` and a proto."""
    require("haproxy")
    started: list[HAProxyProcess] = []

    def start(nodes: list[ServerProcess], send: str, proto: str) -> tuple[HAProxyProcess, int]:
        frontend = socket.socket()
        frontend.bind(("127.0.0.1", 0))
        frontend.listen(1024)
        config = haproxy_config(frontend.fileno(), [n.port for n in nodes], send, proto)
        haproxy = HAProxyProcess(config, tmp_path, (frontend.fileno(),))
        started.append(haproxy)
        port = frontend.getsockname()[1]
        frontend.close()  # HAProxy holds it now
        names = {f"n{i}" for i in range(1, len(nodes) + 1)}
        up = wait_until(
            lambda: haproxy.states("nodes"),
            15,
            0.1,
            until=lambda s: set(s) == names and all(v == "UP" for v in s.values()),
        )
        assert up and all(v == "UP" for v in up.values()), f"{up}\n{haproxy.stop()}"
        return haproxy, port

    yield start
    for haproxy in started:
        print(haproxy.stop())


def curl(port: int, source: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require("curl"), "-s", "-m", "10", "--interface", source, *args,
         "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{port}/hello.txt"],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("send", "proto", "http"),
    [("send-proxy-v2", "proto h2", "--http2-prior-knowledge"), ("send-proxy", "", "--http1.1")],
    ids=["v2-h2c", "v1-http1"],
)
def test_haproxy_passes_the_client_address_and_per_client_refusals(
    server_factory: Callable[..., ServerProcess],
    edge_deployment: Callable[..., tuple[HAProxyProcess, int]],
    tmp_path: Path,
    send: str,
    proto: str,
    http: str,
) -> None:
    access_log = tmp_path / "access.log"
    node = server_factory(
        "--proxy-protocol", "--max-connections-per-client", "2",
        "--access-log", str(access_log), "--metrics-bind", "127.0.0.1:0",
    )  # fmt: skip
    counters = EdgeCounters(metrics_url(node))
    _haproxy, port = edge_deployment([node], send, proto)
    # The access log names the client, not HAProxy (whose address is 127.0.0.1).
    assert curl(port, "127.0.0.2", http).stdout == "200"
    assert wait_until(lambda: "127.0.0.2 - - [" in access_log.read_text(), 5), (
        access_log.read_text()[-2000:]
    )
    served = [line for line in access_log.read_text().splitlines() if "curl/" in line]
    assert served and all(line.startswith("127.0.0.2 ") for line in served), served
    # The health checks came through the header too (LOCAL for v2): the node is UP.
    version = "v2" if send.endswith("v2") else "v1"
    got = counters.read()
    assert got["headers"].get("local" if version == "v2" else version, 0) > 0, got
    assert got["headers"].get(version, 0) >= 1, got
    # 127.0.0.3 holds two connections (HAProxy keeps each one's backend connection: a PROXY
    # connection is private to its client); its third is refused by the node, while
    # 127.0.0.4 is still served.
    held = []
    try:
        for _ in range(2):
            sock = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.3", 0))
            sock.sendall(GET)
            sock.settimeout(5)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200"), "held connection not served"
            held.append(sock)
        third = curl(port, "127.0.0.3", http).stdout
        assert third.startswith("5"), f"a third connection from one client: {third}"
        assert curl(port, "127.0.0.4", http).stdout == "200"
    finally:
        for sock in held:
            sock.close()
    got = counters.read()
    assert got["limits"].get("client_connections", 0) >= 1, got
    assert sum(got["answers"].values()) >= 1, got
    # Once the held connections are gone, the client is served again.
    assert wait_until(lambda: curl(port, "127.0.0.3", http).stdout == "200", 5)
    assert "Traceback" not in node.log_text()


def test_drain_behind_haproxy_with_proxy_v2_loses_nothing(
    server_factory: Callable[..., ServerProcess],
    edge_deployment: Callable[..., tuple[HAProxyProcess, int]],
) -> None:
    require("h2load")
    nodes = [server_factory("--proxy-protocol", "--graceful-timeout", "20") for _ in range(2)]
    haproxy, port = edge_deployment(nodes, "send-proxy-v2", "proto h2")
    url = f"http://127.0.0.1:{port}"
    load = H2load("-D", "4", "-c", "4", "-m", "4", f"{url}/mib.bin", timeout=60)
    time.sleep(1.0)
    nodes[0].signal(signal.SIGTERM)
    assert wait_until(lambda: haproxy.states("nodes").get("n1", "").startswith("DOWN"), 5)
    assert nodes[0].wait(30) == 0
    assert load.running(), "the load ended before the node was gone: not a test"
    assert_all_succeeded(load.result())
    assert nodes[1].proc.poll() is None
    for node in nodes:
        assert "Traceback" not in node.log_text()


def test_bad_proxy_headers_are_closed_and_counted(
    server_factory: Callable[..., ServerProcess],
) -> None:
    node = server_factory(
        "--proxy-protocol", "--proxy-header-timeout", "0.5", "--metrics-bind", "127.0.0.1:0"
    )
    counters = EdgeCounters(metrics_url(node))
    port = node.port
    cases = {
        "missing": GET,
        "malformed": b"PROXY TCP4 203.0.113.7 192.0.2.1 51000\r\n" + GET,
        "oversized": V2_SIGNATURE + b"\x21\x11\xff\xff" + bytes(64),
        "unsupported": encode_v2("203.0.113.7")[:13] + b"\x12" + encode_v2("203.0.113.7")[14:],
    }
    for reason, data in cases.items():
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(data)
            assert closed_by_server(sock), f"{reason}: not closed"
    # Truncated: half a header, then the client goes; and one that says nothing in time.
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"PROXY TCP4 203.0.113.7 ")
        sock.shutdown(socket.SHUT_WR)
        assert closed_by_server(sock)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"PROXY TCP4 203.0.")
        assert closed_by_server(sock, timeout=5), "a header that never ends was kept"
    # A good header is served: nothing above cost the listener anything.
    with proxied(port, "203.0.113.7", GET) as sock:
        assert read_all(sock, 2).startswith(b"HTTP/1.1 200")
    errors = wait_until(
        lambda: counters.read()["errors"], 5, 0.1, until=lambda e: e.get("timeout", 0) >= 1
    )
    for reason in (*cases, "truncated", "timeout"):
        assert errors.get(reason, 0) >= 1, (reason, errors)
    assert "Traceback" not in node.log_text()


def test_proxy_headers_only_from_trusted_networks(
    server_factory: Callable[..., ServerProcess],
) -> None:
    node = server_factory(
        "--proxy-protocol", "--proxy-protocol-from", "10.0.0.0/8",
        "--metrics-bind", "127.0.0.1:0",
    )  # fmt: skip
    counters = EdgeCounters(metrics_url(node))
    with proxied(node.port, "203.0.113.7", GET) as sock:
        assert closed_by_server(sock), "a PROXY header from an untrusted peer was served"
    assert wait_until(lambda: counters.read()["errors"].get("untrusted", 0) >= 1, 5)
    trusted = server_factory("--proxy-protocol", "--proxy-protocol-from", "127.0.0.0/8")
    with proxied(trusted.port, "203.0.113.7", GET) as sock:
        assert read_all(sock, 2).startswith(b"HTTP/1.1 200")
