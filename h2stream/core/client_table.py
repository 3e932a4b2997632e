"""Per-client limits: connections open at once and new connections per second, per address.

``--max-connections`` is one number for the whole worker, so one client can take every slot.
A :class:`ClientTable` keeps, per client address, the connections it has open and a token
bucket of new connections (``rate`` tokens a second, up to ``burst``). :meth:`admit` answers
at accept whether a new connection may count, :meth:`release` gives its slot back. Time is
passed in and nothing here does I/O, so the arithmetic is tested without sockets.

Memory is bounded however many addresses there are (spoofed through a PROXY header, or a
botnet): an address with connections open is in ``_active``, which cannot outgrow the
worker's connection limit; an address with none is kept only for its token bucket, in an
LRU of at most ``capacity`` entries, the least recently seen dropped first. Dropping one
forgets that its bucket was partly spent; it comes back full, which a flood of fresh
addresses could force on purpose, but never more memory. With no rate limit, an address
leaves the table with its last connection.

IPv6 clients are keyed by their /64: one host owns a whole /64 (SLAAC, privacy addresses), so
counting single addresses would give it 2**64 budgets.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict

from h2stream.core.stats import STATS

# Refusal kinds: their names in STATS.limit_events.
CLIENT_CONNECTIONS = "client_connections"
CLIENT_RATE = "client_rate"
IPV6_PREFIX = 64


def client_key(address: str) -> str:
    """The table key of a client address: IPv4 as it is, IPv6 as its /64."""
    if ":" not in address:
        return address
    try:
        network = ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False)
    except ValueError:
        return address
    return str(network)


class _Entry:
    __slots__ = ("active", "stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.active = 0
        self.tokens = tokens
        self.stamp = stamp


class ClientTable:
    """One worker's per-address counts (see the module docstring). 0 turns a limit off."""

    def __init__(self, max_connections: int, rate: float, burst: float, capacity: int) -> None:
        self.max_connections = max_connections
        self.rate = rate
        # A burst below one token would refuse every connection.
        self.burst = max(1.0, burst or rate)
        self.capacity = capacity
        self._active: dict[str, _Entry] = {}
        self._idle: OrderedDict[str, _Entry] = OrderedDict()
        # Idle entries dropped to stay within ``capacity``.
        self.evictions = 0

    @property
    def enabled(self) -> bool:
        return bool(self.max_connections or self.rate)

    def __len__(self) -> int:
        return len(self._active) + len(self._idle)

    def admit(self, key: str, now: float) -> str | None:
        """A new connection from ``key``: None when it may count (then :meth:`release` it
        exactly once), else the kind of limit that refused it."""
        before = len(self)
        entry = self._active.get(key)
        if entry is None:
            entry = self._idle.pop(key, None)
            if entry is None:
                entry = _Entry(self.burst, now)
        refused = self._charge(entry, now)
        if refused is None:
            entry.active += 1
        if entry.active:
            self._active[key] = entry
        elif self.rate:
            self._remember(key, entry)
        STATS.client_table_entries += len(self) - before
        return refused

    def _charge(self, entry: _Entry, now: float) -> str | None:
        if self.rate:
            tokens = min(self.burst, entry.tokens + (now - entry.stamp) * self.rate)
            entry.stamp = now
            if tokens < 1.0:
                entry.tokens = tokens
                return CLIENT_RATE
            entry.tokens = tokens - 1.0
        if self.max_connections and entry.active >= self.max_connections:
            return CLIENT_CONNECTIONS
        return None

    def release(self, key: str) -> None:
        """A connection :meth:`admit` let in has closed."""
        entry = self._active.get(key)
        if entry is None:
            return
        entry.active -= 1
        if entry.active <= 0:
            before = len(self)
            del self._active[key]
            if self.rate:
                self._remember(key, entry)
            STATS.client_table_entries += len(self) - before

    def _remember(self, key: str, entry: _Entry) -> None:
        """Keep an address with no connection open, for its bucket: most recent last."""
        idle = self._idle
        idle[key] = entry
        idle.move_to_end(key)
        if len(idle) > self.capacity:
            idle.popitem(last=False)
            self.evictions += 1
            STATS.client_table_evictions += 1

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until ``key`` has a token again (0 when it has one, or no rate limit)."""
        entry = self._active.get(key) or self._idle.get(key)
        if entry is None or not self.rate:
            return 0.0
        tokens = min(self.burst, entry.tokens + (now - entry.stamp) * self.rate)
        return max(0.0, (1.0 - tokens) / self.rate)
