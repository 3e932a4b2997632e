"""Busy-polling a connection for the credit its peer is about to return.

When flow control binds (the peer's windows are all in flight: small windows, A-1g-w16), the
next thing that can happen is the peer's WINDOW_UPDATE, a few tens of microseconds away on
loopback or a LAN. Sleeping in the event loop for it costs more than the wait: the idle vCPU
halts, and waking it again is slow on a VM. A ping-pong of one byte over loopback on the
2-core VM: 65 us per round trip when both sides sleep, 20 us when one side polls. So a worker
whose only connection waits for credit polls the socket for up to ``--busy-poll-us`` before it
goes back to sleep, much as Linux's SO_BUSY_POLL does for a NIC's queues (loopback has none).

Bounds, so that polling only ever replaces sleep: the caller polls only when the worker has
this one connection and nothing else to do for it; each poll ends after ``--busy-poll-us``
without input, and all polling in one event-loop callback after 2 ms (timers, accepts and
signals wait no longer). A connection whose polls find nothing four times in a row (a peer
across a real network answers in milliseconds) skips its next 16 waits, then tries one poll,
and each further miss doubles the skip up to 1,024 waits; a hit starts over. Counting waits
rather than time means a slow start (the first windows of a download, while the client sets
up) costs only 16 waits of polling, not the rest of a short download.

TLS polls too, without reading (:meth:`BusyPoll.wait_readable`): uvloop's SSL layer owns the
socket's reads, so the poll peeks and returns as soon as bytes are there.
"""

from __future__ import annotations

import functools
import socket
import time
from collections.abc import Callable
from typing import TypeVar

from h2stream.core.stats import STATS

_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
_PEEK = socket.MSG_PEEK | _DONTWAIT
T = TypeVar("T")


class BusyPoll:
    """Polls one socket (a duplicate of the transport's, never registered with the loop)."""

    __slots__ = ("_buffer", "_misses", "_rest", "_skip", "_sock", "_view", "_window_ns")

    MISSES_BEFORE_REST = 4
    FIRST_REST = 16  # waits skipped after the first run of misses
    LONGEST_REST = 1024
    CALLBACK_LIMIT_NS = 2_000_000
    BUFFER = 65536

    def __init__(self, sock: socket.socket, window_us: int) -> None:
        self._sock = sock
        self._window_ns = window_us * 1000
        # Made at the first poll: most connections never poll (only a worker's one
        # connection does), and 64 KiB each would be most of an idle connection's cost.
        self._buffer: bytearray | None = None
        self._view: memoryview | None = None
        self._misses = 0
        self._rest = self.FIRST_REST
        self._skip = 0  # waits still to sleep through without polling

    def poll(self, feed: Callable[[bytes], bool]) -> None:
        """Read what arrives within the window and hand it to ``feed``, which says whether
        to keep polling. End of stream and socket errors are left for the transport to see
        (they stay pending on the socket)."""
        if self._skip:
            self._skip -= 1
            return
        now = time.monotonic_ns
        start = now()
        deadline = start + self._window_ns
        limit = start + self.CALLBACK_LIMIT_NS
        recv_into = self._sock.recv_into
        buffer = self._buffer
        if buffer is None:
            buffer = self._buffer = bytearray(self.BUFFER)
            self._view = memoryview(buffer)
        view = self._view
        assert view is not None
        read = functools.partial(recv_into, buffer, 0, _DONTWAIT)
        while True:
            n = self._first(read, deadline)
            if not n:
                return  # a miss, end of stream or an error (left for the transport)
            self._hit()
            if not feed(bytes(view[:n])):
                return
            started = now()
            if started >= limit:
                return
            deadline = started + self._window_ns

    def wait_readable(self) -> None:
        """Poll without reading (``MSG_PEEK``) until bytes are there or the window ends.

        For TLS, whose layer (uvloop's) owns the socket's reads: the bytes are left for it,
        and the event loop's next look at its sockets finds them at once, so the vCPU stays
        awake for the peer's credit as it does on h2c; only the decrypting read is the loop's.
        """
        if self._skip:
            self._skip -= 1
            return
        peek = functools.partial(self._sock.recv, 1, _PEEK)
        if self._first(peek, time.monotonic_ns() + self._window_ns):
            self._hit()  # bytes to read (end of stream too is left for the transport's read)

    def _first(self, attempt: Callable[[], T], deadline: int) -> T | None:
        """What ``attempt`` (a non-blocking socket call) returns once it stops saying "would
        block", or None: at ``deadline`` (a miss, counted) or on an error (a reset or
        similar, which the transport's own read reports)."""
        now = time.monotonic_ns
        while True:
            try:
                return attempt()
            except BlockingIOError:
                if now() < deadline:
                    continue
                self._missed()
                return None
            except OSError:
                return None

    def close(self) -> None:
        """Close the socket polled (a duplicate: the connection's own stays open)."""
        self._sock.close()

    def _hit(self) -> None:
        STATS.busy_poll_hits += 1
        self._misses = 0
        self._rest = self.FIRST_REST

    def _missed(self) -> None:
        STATS.busy_poll_misses += 1
        self._misses += 1
        if self._misses >= self.MISSES_BEFORE_REST:
            self._skip = self._rest
            self._rest = min(2 * self._rest, self.LONGEST_REST)
            self._misses = self.MISSES_BEFORE_REST - 1  # after a rest, one try
