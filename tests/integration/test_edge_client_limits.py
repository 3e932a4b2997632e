"""Per-client limits on a real server process, clients told apart by PROXY headers on loopback.

One address opening 1,000 connections gets its cap and no more, each refusal answered in the
protocol it spoke (503 + Retry-After for HTTP/1.1, SETTINGS + GOAWAY for HTTP/2), while a second
address is served throughout; the rate limit answers with when to come back; 100,000 distinct
addresses leave the per-client table within its cap; and ``--max-connections`` refusals fit the
protocol too. Nothing leaks: fds come back, RSS stays bounded.
"""

from __future__ import annotations

import resource
import socket
import time
from collections.abc import Callable

from support.attacks import Footprint
from support.clients import tls_socket
from support.edge import EdgeCounters, flood_addresses, proxied, read_all
from support.frames import GOAWAY, PREFACE, SETTINGS, take_frames
from support.metrics import metrics_url
from support.polling import wait_until
from support.servers import ServerProcess

GET = b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
KEEP_ALIVE = b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n"
CALM = 0xB  # ENHANCE_YOUR_CALM


def _raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def _h2_refusal(data: bytes) -> tuple[list[int], int, bytes]:
    frames, _ = take_frames(bytearray(data))
    goaway = next(f for f in frames if f.kind == GOAWAY)
    code = int.from_bytes(goaway.payload[4:8], "big")
    return [f.kind for f in frames], code, goaway.payload[8:]


def test_1000_connections_from_one_address_capped_while_another_is_served(
    server_factory: Callable[..., ServerProcess],
) -> None:
    cap = 20
    node = server_factory(
        "--proxy-protocol", "--max-connections-per-client", str(cap),
        "--metrics-bind", "127.0.0.1:0", "--http1-keepalive-timeout", "300",
    )  # fmt: skip
    counters = EdgeCounters(metrics_url(node))
    _raise_fd_limit(4096)
    footprint = Footprint(node)
    held: list[socket.socket] = []
    refused_http1 = refused_http2 = 0
    try:
        for n in range(1000):
            # Every other one speaks HTTP/2: the refusal must fit each.
            http2 = n % 2 == 1
            under = len(held) < cap
            payload = PREFACE if http2 else KEEP_ALIVE if under else GET
            sock = proxied(node.port, "198.51.100.7", payload)
            if under:
                held.append(sock)  # under the cap: served (checked below), kept open
                continue
            answer = read_all(sock, 5)
            sock.close()
            if http2:
                kinds, code, why = _h2_refusal(answer)
                assert kinds[:2] == [SETTINGS, GOAWAY] and code == CALM, (kinds, code)
                assert why == b"client connection limit"
                refused_http2 += 1
            else:
                assert answer.startswith(b"HTTP/1.1 503 "), answer[:100]
                assert b"\r\nRetry-After: 1\r\n" in answer and b"Connection: close" in answer
                refused_http1 += 1
            if n % 100 == 0:
                # A second address is served while the first is refused.
                with proxied(node.port, "198.51.100.8", GET) as other:
                    assert read_all(other, 5).startswith(b"HTTP/1.1 200"), n
        # The connections under the cap were served all along.
        for sock in held[::2]:
            sock.settimeout(5)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        assert refused_http1 + refused_http2 == 1000 - cap
        got = counters.read()
        assert got["limits"]["client_connections"] == 1000 - cap, got
        assert got["answers"]["http1"] == refused_http1
        assert got["answers"]["http2"] == refused_http2
        # Refused connections never counted as open ones: exactly the held ones are.
        active = wait_until(lambda: counters.read()["table"]["active"], 5, until=lambda n: n == cap)
        assert active == cap
    finally:
        for sock in held:
            sock.close()

    # Their slots come back: the address is served again, and nothing leaked.
    def served_again() -> bool:
        with proxied(node.port, "198.51.100.7", GET) as sock:
            return read_all(sock, 2).startswith(b"HTTP/1.1 200")

    assert wait_until(served_again, 5)
    footprint.assert_bounded()
    assert "Traceback" not in node.log_text()


def test_rate_limit_per_address_says_when_to_come_back(
    server_factory: Callable[..., ServerProcess],
) -> None:
    node = server_factory(
        "--proxy-protocol", "--new-connections-per-second-per-client", "0.25",
        "--new-connections-burst-per-client", "3", "--metrics-bind", "127.0.0.1:0",
    )  # fmt: skip
    counters = EdgeCounters(metrics_url(node))
    answers = []
    for _ in range(5):
        with proxied(node.port, "2001:db8:7:7::1", GET, v2=False) as sock:
            answers.append(read_all(sock, 2))
    assert [a[:12] for a in answers] == [b"HTTP/1.1 200"] * 3 + [b"HTTP/1.1 503"] * 2
    # A token every 4 s: the 503 says so (to the second, rounded up).
    assert b"\r\nRetry-After: 4\r\n" in answers[3], answers[3]
    # The same /64 is the same client; another /64 is not.
    with proxied(node.port, "2001:db8:7:7::2", GET) as sock:
        assert read_all(sock, 2).startswith(b"HTTP/1.1 503")
    with proxied(node.port, "2001:db8:7:8::1", GET) as sock:
        assert read_all(sock, 2).startswith(b"HTTP/1.1 200")
    assert counters.read()["limits"]["client_rate"] == 3


def test_client_table_bounded_under_100000_addresses(
    server_factory: Callable[..., ServerProcess],
) -> None:
    capacity = 2000
    node = server_factory(
        "--proxy-protocol", "--new-connections-per-second-per-client", "10",
        "--client-table-size", str(capacity), "--metrics-bind", "127.0.0.1:0",
    )  # fmt: skip
    counters = EdgeCounters(metrics_url(node))
    flood_addresses(node.port, 5000)  # warm up: the table is full from here on
    footprint = Footprint(node)
    started = time.monotonic()
    flood_addresses(node.port, 100_000, first=5000)
    elapsed = time.monotonic() - started
    # Every header read and every connection closed: an address with a connection still open
    # is counted beside the idle LRU (bounded by the connection limit, not by the capacity).
    got = wait_until(
        counters.read, 10, 0.2,
        until=lambda g: g["headers"].get("v2", 0) >= 105_000 and g["table"]["active"] == 0,
    )  # fmt: skip
    assert got["headers"]["v2"] == 105_000, got
    assert got["table"]["active"] == 0, got
    assert got["table"]["entries"] <= capacity, got
    assert got["table"]["evictions"] == 105_000 - capacity, got
    assert not got["errors"], got
    # 100,000 more addresses cost no memory beyond the table's cap (which the warm-up filled).
    footprint.assert_bounded(rss_slack=8 << 20)
    print(f"100,000 addresses in {elapsed:.1f} s")


def test_max_connections_refusal_fits_the_protocol(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """--max-connections and per-client limits share one refusal: an HTTP/1.1 client gets a
    503 it can read, not HTTP/2 frames."""
    node = server_factory("--max-connections", "2", "--metrics-bind", "127.0.0.1:0")
    counters = EdgeCounters(metrics_url(node))
    holders = [socket.create_connection(("127.0.0.1", node.port)) for _ in range(2)]
    try:
        for holder in holders:
            holder.sendall(GET)
            holder.settimeout(5)
            assert holder.recv(65536).startswith(b"HTTP/1.1 200")
        with socket.create_connection(("127.0.0.1", node.port)) as sock:
            sock.sendall(GET)
            assert read_all(sock).startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        with socket.create_connection(("127.0.0.1", node.port)) as sock:
            sock.sendall(PREFACE)
            kinds, code, why = _h2_refusal(read_all(sock))
            assert kinds == [SETTINGS, GOAWAY] and code == 0 and why == b"connection limit"
        # Silent: closed once the refusal's read timeout passes, counted as "closed".
        with socket.create_connection(("127.0.0.1", node.port)) as sock:
            assert read_all(sock, 5) == b""
    finally:
        for holder in holders:
            holder.close()
    got = counters.read()
    assert got["limits"]["max_connections"] == 3
    assert got["answers"] == {"http1": 1, "http2": 1, "closed": 1}, got


def test_tls_refusals_answer_by_alpn_and_count_nothing_twice(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """Over TLS the handshake's ALPN says the protocol: answered at once, no read needed. The
    refused connections leave the open-connection count as it was."""
    node = server_factory(
        "--self-signed", "--max-connections-per-client", "1", "--metrics-bind", "127.0.0.1:0"
    )
    counters = EdgeCounters(metrics_url(node))
    with tls_socket(node.port, ("http/1.1",)) as held:
        held.sendall(KEEP_ALIVE)
        assert held.recv(65536).startswith(b"HTTP/1.1 200")
        with tls_socket(node.port, ("http/1.1",)) as sock:
            assert read_all(sock).startswith(b"HTTP/1.1 503 ")
        with tls_socket(node.port, ("h2",)) as sock:
            kinds, code, _ = _h2_refusal(read_all(sock))
            assert kinds == [SETTINGS, GOAWAY] and code == CALM
        got = counters.read()
        assert got["answers"] == {"http1": 1, "http2": 1, "closed": 0}, got
        assert wait_until(lambda: counters.read()["table"]["active"] == 1, 5)
    assert wait_until(lambda: counters.read()["table"]["active"] == 0, 5)
