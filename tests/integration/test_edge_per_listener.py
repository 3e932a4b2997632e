"""PROXY protocol per listener (``--bind "HOST:PORT proxy-protocol"``, as nginx's ``listen ...
proxy_protocol``): one port behind the balancer expects the header, another beside it serves
clients directly; in one process and under the supervisor, whose workers learn which of
their inherited sockets is which.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from support.commands import run_h2stream
from support.curl import curl_status
from support.edge import closed_by_server, read_all
from support.polling import wait_until
from support.servers import ServerProcess

from h2stream.core.proxy_header import encode_v1

GET = b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_one_port_expects_the_header_the_other_does_not(
    files_root: Path, tmp_path: Path, workers: str
) -> None:
    log = tmp_path / "access.log"
    server = ServerProcess(
        files_root, "--bind", "127.0.0.1:0", "--bind", "127.0.0.1:0 proxy-protocol",
        "--workers", workers, "--access-log", str(log), listeners=2,
    )  # fmt: skip
    try:
        direct, behind = (int(url.rsplit(":", 1)[1]) for url in server.urls)
        # Direct: an ordinary client, no header.
        code, body, status = curl_status(f"http://127.0.0.1:{direct}/hello.txt")
        assert (code, status) == (0, "200 1.1") and body == b"hello, h2stream\n"
        # Behind the balancer: a client without a header is closed, unanswered...
        with socket.create_connection(("127.0.0.1", behind), timeout=10) as sock:
            sock.sendall(GET)
            assert closed_by_server(sock)
        # ...and one with a header is served as the client it names.
        with socket.create_connection(("127.0.0.1", behind), timeout=10) as sock:
            sock.sendall(encode_v1("192.0.2.44", "127.0.0.1", 40000, behind) + GET)
            assert read_all(sock).startswith(b"HTTP/1.1 200")
        assert wait_until(lambda: "192.0.2.44 - - [" in log.read_text(), 10), log.read_text()
        lines = [line for line in log.read_text().splitlines() if "/hello.txt" in line]
        assert any(line.startswith("127.0.0.1 ") for line in lines), lines
    finally:
        server.stop()


def test_bind_options_are_checked(tmp_path: Path) -> None:
    config = tmp_path / "h2stream.toml"
    config.write_text('bind = ["127.0.0.1:0", "127.0.0.1:0 proxy-protocol"]\n')
    ok = run_h2stream("check-config", str(config))
    assert ok.returncode == 0, ok.stderr
    config.write_text('bind = ["127.0.0.1:0 proxy-protcol"]\n')
    bad = run_h2stream("check-config", str(config))
    assert bad.returncode == 2
    assert "unknown option 'proxy-protcol'" in bad.stderr, bad.stderr
