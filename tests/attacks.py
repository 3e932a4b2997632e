"""Tools for the attack tests: crafted frames on a raw socket, and the three checks they share.

Each attack test shows (a) what the server answered, as the raw client saw it (the frame and
its error code), (b) that the server's RSS and open fds stayed within bounds, measured with
psutil on the server process, and (c) that a well-behaved client on another connection was
served normally while the attack ran (:func:`served_during`). Everything is bounded in count
and time, and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import h2.errors
import hpack
from h2client import RawH2Client

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HEADER = struct.Struct(">IBI")  # 24-bit length << 8 | type, flags, stream id

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY = range(8)
WINDOW_UPDATE, CONTINUATION = 8, 9
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4

NO_ERROR = int(h2.errors.ErrorCodes.NO_ERROR)
PROTOCOL_ERROR = int(h2.errors.ErrorCodes.PROTOCOL_ERROR)
INTERNAL_ERROR = int(h2.errors.ErrorCodes.INTERNAL_ERROR)
REFUSED_STREAM = int(h2.errors.ErrorCodes.REFUSED_STREAM)
CANCEL = int(h2.errors.ErrorCodes.CANCEL)
ENHANCE_YOUR_CALM = int(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)

MIB = 1 << 20


# -- frames ----------------------------------------------------------------------------------


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return _HEADER.pack(len(payload) << 8 | kind, flags, stream_id) + payload


def settings(values: dict[int, int] | None = None, ack: bool = False) -> bytes:
    payload = b"".join(struct.pack(">HI", k, v) for k, v in (values or {}).items())
    return frame(SETTINGS, ACK if ack else 0, 0, payload)


def ping(data: bytes = b"12345678", ack: bool = False) -> bytes:
    return frame(PING, ACK if ack else 0, 0, data)


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">I", increment))


def priority(stream_id: int, depends_on: int = 0, weight: int = 15) -> bytes:
    return frame(PRIORITY, 0, stream_id, struct.pack(">IB", depends_on, weight))


def rst_stream(stream_id: int, code: int = CANCEL) -> bytes:
    return frame(RST_STREAM, 0, stream_id, struct.pack(">I", code))


def data(stream_id: int, payload: bytes = b"", end: bool = False) -> bytes:
    return frame(DATA, END_STREAM if end else 0, stream_id, payload)


def request_block(path: str = "/hello.txt", method: str = "GET", extra: int = 0) -> bytes:
    """A request header block, encoded without the dynamic table (so blocks are standalone)."""
    encoder = hpack.Encoder()
    fields = [
        (b":method", method.encode()),
        (b":scheme", b"http"),
        (b":authority", b"localhost"),
        (b":path", path.encode()),
    ]
    fields += [(b"x-pad-%d" % i, b"v" * 100) for i in range(extra)]
    return encoder.encode([hpack.NeverIndexedHeaderTuple(k, v) for k, v in fields])


def headers(
    stream_id: int, block: bytes, end_stream: bool = True, end_headers: bool = True
) -> bytes:
    flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
    return frame(HEADERS, flags, stream_id, block)


def continuation(stream_id: int, block: bytes, end_headers: bool = False) -> bytes:
    return frame(CONTINUATION, END_HEADERS if end_headers else 0, stream_id, block)


# -- the raw connection ----------------------------------------------------------------------


@dataclass
class Frame:
    kind: int
    flags: int
    stream_id: int
    payload: bytes

    @property
    def error_code(self) -> int:
        """For GOAWAY and RST_STREAM."""
        if self.kind == GOAWAY:
            return int(struct.unpack(">I", self.payload[4:8])[0])
        return int(struct.unpack(">I", self.payload[:4])[0])

    @property
    def last_stream_id(self) -> int:
        return int(struct.unpack(">I", self.payload[:4])[0]) & 0x7FFFFFFF


class RawConnection:
    """A socket speaking raw frames: nothing is validated, acknowledged or flow-controlled
    unless the test says so (``ack_settings``)."""

    def __init__(
        self,
        port: int,
        *,
        preface: bool = True,
        initial: bytes = b"",
        ack_settings: bool = True,
        rcvbuf: int | None = None,
        connection_window: int = 65535,
    ) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Before connect, so the window the kernel advertises is small from the start.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
        self.sock = sock
        self.frames: list[Frame] = []
        self._buffer = bytearray()
        self.closed = False  # EOF or reset seen
        self.send_failed = False
        self._ack_settings = ack_settings
        if preface:
            grow = connection_window - 65535
            self.send(PREFACE + settings() + (window_update(0, grow) if grow else b"") + initial)

    def send(self, payload: bytes, timeout: float = 10) -> bool:
        """Send everything; False when the server has closed or stopped reading for
        ``timeout`` seconds (both are answers an attack test may expect)."""
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(payload)
            return True
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            self.send_failed = True
            return False

    def read(self, timeout: float) -> bool:
        """Take what arrives within ``timeout``; False on timeout or close."""
        if self.closed:
            return False
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(1 << 20)
        except (TimeoutError, BlockingIOError):  # BlockingIOError: timeout 0, nothing there
            return False
        except (ConnectionResetError, OSError):
            self.closed = True
            return False
        if not chunk:
            self.closed = True
            return False
        self._buffer += chunk
        self._parse()
        return True

    def _parse(self) -> None:
        buffer = self._buffer
        while len(buffer) >= 9:
            word, flags, stream_id = _HEADER.unpack_from(buffer)
            length = word >> 8
            if len(buffer) < 9 + length:
                break
            got = Frame(word & 0xFF, flags, stream_id & 0x7FFFFFFF, bytes(buffer[9 : 9 + length]))
            del buffer[: 9 + length]
            self.frames.append(got)
            if got.kind == SETTINGS and not got.flags & ACK and self._ack_settings:
                self.send(settings(ack=True))

    def until(self, condition: Callable[[], bool], timeout: float = 10) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return condition()
            self.read(min(left, 0.5))
        return True

    def read_for(self, seconds: float) -> None:
        """Read whatever arrives for ``seconds`` (a pacing pause that keeps reading)."""
        deadline = time.monotonic() + seconds
        while not self.closed and (left := deadline - time.monotonic()) > 0:
            self.read(left)

    def wait_closed(self, timeout: float = 10) -> bool:
        """Read (and keep the frames) until the server closes the connection."""
        return self.until(lambda: self.closed, timeout)

    @property
    def goaway(self) -> Frame | None:
        return next((f for f in self.frames if f.kind == GOAWAY), None)

    def resets(self) -> dict[int, int]:
        return {f.stream_id: f.error_code for f in self.frames if f.kind == RST_STREAM}

    def kinds(self, stream_id: int) -> list[int]:
        return [f.kind for f in self.frames if f.stream_id == stream_id]

    def body(self, stream_id: int) -> bytes:
        return b"".join(
            f.payload for f in self.frames if f.kind == DATA and f.stream_id == stream_id
        )

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


# -- the three checks ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Metrics:
    """The server's ``/metrics`` (its --metrics-bind listener), read as the operator would."""

    _LINE = re.compile(r'^h2stream_limit_events_total\{kind="([^"]+)"\} ([0-9.e+]+)$', re.M)

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"

    def limit_events(self) -> dict[str, int]:
        with urllib.request.urlopen(self.url, timeout=10) as response:
            text = response.read().decode()
        return {kind: int(float(value)) for kind, value in self._LINE.findall(text)}

    def wait_for(self, kind: str, at_least: int = 1, timeout: float = 10) -> int:
        deadline = time.monotonic() + timeout
        while True:
            count = self.limit_events().get(kind, 0)
            if count >= at_least or time.monotonic() > deadline:
                return count
            time.sleep(0.1)


def start(server_factory: Callable[..., Any], *args: str, root: Any = None) -> tuple[Any, Metrics]:
    """A server process with a metrics listener, warmed up by one request."""
    port = free_port()
    server = server_factory(*args, "--metrics-bind", f"127.0.0.1:{port}", root=root)
    metrics = Metrics(port)
    fetch(server.port, "/hello.txt")
    # The metrics listener starts just after the HTTP/2 one has announced itself.
    deadline = time.monotonic() + 10
    while True:
        try:
            metrics.limit_events()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    return server, metrics


@dataclass
class Footprint:
    """RSS and open fds of the server process, to compare after an attack."""

    server: Any
    rss: int = 0
    fds: int = 0

    def __post_init__(self) -> None:
        self.rss = self.server.rss()
        self.fds = self.server.fd_count()

    def assert_bounded(self, rss_slack: int = 32 * MIB, fd_slack: int = 2) -> None:
        """Fds back near the baseline (connections closed, files closed) within a bounded
        wait; RSS within ``rss_slack`` of it."""
        deadline = time.monotonic() + 10
        while self.server.fd_count() > self.fds + fd_slack and time.monotonic() < deadline:
            time.sleep(0.1)
        fds, rss = self.server.fd_count(), self.server.rss()
        assert fds <= self.fds + fd_slack, f"fds {self.fds} -> {fds}: something leaked"
        assert rss <= self.rss + rss_slack, (
            f"RSS grew {(rss - self.rss) / MIB:.1f} MiB (from {self.rss / MIB:.1f} MiB)"
        )


def fetch(port: int, path: str, timeout: float = 10) -> bytes:
    """A well-behaved client: one connection, one request, the whole body or an assertion."""
    client = RawH2Client(port, auto_ack=True, connection_window=1 << 30)
    try:
        sid = client.request(path)
        assert client.until(lambda: client.responses[sid].ended, timeout), f"{path}: no answer"
        response = client.responses[sid]
        assert response.status == 200 and response.reset_code is None, (
            f"{path}: status {response.status}, reset {response.reset_code}"
        )
        return bytes(response.body)
    finally:
        client.close()


@contextlib.contextmanager
def attack_running(
    mount: Callable[[], None], max_seconds: float = 30
) -> Iterator[Callable[[], int]]:
    """Run ``mount`` (one round of an attack) over and over on a thread until the block ends.

    Yields a function returning the rounds completed so far; the block runs once the first
    round has started, so whatever it does happens during the attack.
    """
    stop = threading.Event()
    started = threading.Event()
    rounds = [0]
    errors: list[BaseException] = []

    def run() -> None:
        deadline = time.monotonic() + max_seconds
        while not stop.is_set() and time.monotonic() < deadline:
            started.set()
            try:
                mount()
            except BaseException as exc:  # reported in the test's thread
                errors.append(exc)
                return
            rounds[0] += 1

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield lambda: rounds[0]
        alive = thread.is_alive()
    finally:
        stop.set()
        thread.join(max_seconds + 10)
    if errors:
        raise errors[0]
    assert alive, "the attack ended before the good client was done"


def served_during(port: int, path: str, expected: bytes, count: int = 3) -> None:
    """(c): a well-behaved client gets ``path`` ``count`` times, on fresh connections."""
    for _ in range(count):
        assert fetch(port, path) == expected
