"""The per-client table (h2stream.core.client_table): concurrent caps, the token bucket with
time passed in, IPv6 /64 keys, and memory bounded by the LRU under countless addresses."""

from __future__ import annotations

from h2stream.core.client_table import (
    CLIENT_CONNECTIONS,
    CLIENT_RATE,
    ClientTable,
    client_key,
)
from h2stream.core.stats import STATS


def test_concurrent_cap_per_address() -> None:
    table = ClientTable(max_connections=2, rate=0, burst=0, capacity=16)
    assert table.admit("198.51.100.7", 0.0) is None
    assert table.admit("198.51.100.7", 0.0) is None
    assert table.admit("198.51.100.7", 0.0) == CLIENT_CONNECTIONS
    # Another address has its own slots.
    assert table.admit("198.51.100.8", 0.0) is None
    table.release("198.51.100.7")
    assert table.admit("198.51.100.7", 0.0) is None
    # Without a rate, an address leaves the table with its last connection.
    for _ in range(2):
        table.release("198.51.100.7")
    table.release("198.51.100.8")
    assert len(table) == 0
    table.release("198.51.100.9")  # never admitted: nothing happens


def test_token_bucket_rate_and_burst() -> None:
    table = ClientTable(max_connections=0, rate=2.0, burst=4, capacity=16)
    now = 100.0
    results = [table.admit("a", now) for _ in range(6)]
    assert results == [None] * 4 + [CLIENT_RATE] * 2
    assert table.retry_after("a", now) == 0.5  # a token every half second
    # Half a second later one token is back, and only one.
    assert table.admit("a", now + 0.5) is None
    assert table.admit("a", now + 0.5) == CLIENT_RATE
    # Long idle: the bucket refills to the burst, no further.
    results = [table.admit("a", now + 60) for _ in range(5)]
    assert results == [None] * 4 + [CLIENT_RATE]


def test_burst_defaults_to_one_seconds_worth() -> None:
    table = ClientTable(max_connections=0, rate=3.0, burst=0, capacity=16)
    assert [table.admit("a", 0.0) for _ in range(4)] == [None] * 3 + [CLIENT_RATE]
    slow = ClientTable(max_connections=0, rate=0.2, burst=0, capacity=16)
    assert [slow.admit("a", 0.0) for _ in range(2)] == [None, CLIENT_RATE]  # never below 1


def test_rate_and_cap_together() -> None:
    table = ClientTable(max_connections=1, rate=10.0, burst=10, capacity=16)
    assert table.admit("a", 0.0) is None
    assert table.admit("a", 0.0) == CLIENT_CONNECTIONS
    table.release("a")
    assert table.admit("a", 0.0) is None


def test_ipv6_keyed_by_its_64() -> None:
    assert client_key("203.0.113.7") == "203.0.113.7"
    assert client_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:2:bbbb::9") == client_key("2001:db8:1:2:aaaa::1")
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    table = ClientTable(max_connections=1, rate=0, burst=0, capacity=16)
    assert table.admit(client_key("2001:db8:1:2::1"), 0.0) is None
    assert table.admit(client_key("2001:db8:1:2::2"), 0.0) == CLIENT_CONNECTIONS


def test_lru_bounds_memory_under_100000_addresses() -> None:
    capacity = 1000
    entries_before = STATS.client_table_entries
    table = ClientTable(max_connections=3, rate=5.0, burst=5, capacity=capacity)
    held = ["192.0.2.1", "192.0.2.2"]
    for address in held:
        assert table.admit(address, 0.0) is None
    for n in range(100_000):
        address = f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}"
        assert table.admit(address, n * 1e-4) is None
        table.release(address)
        assert len(table) <= capacity + len(held)
    assert table.evictions == 100_000 - capacity
    # Addresses with a connection open are never evicted: their counts stay right.
    assert all(table.admit(a, 10.0) is None for a in held)
    assert all(table.admit(a, 10.0) is None for a in held)
    assert all(table.admit(a, 10.0) == CLIENT_CONNECTIONS for a in held)
    # The most recent idle addresses kept their (spent) buckets; the oldest were forgotten.
    assert "10.1.134.159" in table._idle  # the last one (n = 99,999)
    assert "10.0.0.0" not in table._idle
    assert STATS.client_table_entries - entries_before == len(table)
