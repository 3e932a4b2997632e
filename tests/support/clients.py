"""Clients on real loopback sockets, for the protocol edge cases real tools cannot produce.

- :class:`RawH2Client` drives h2's client side by hand, so a test controls every frame: when
  windows are opened, what is sent, and what arrived. :class:`UploadClient` adds a request
  body sent as the server's windows allow. :func:`request` is one request on a fresh one.
- :class:`RawConnection` speaks raw frames (:mod:`support.frames`): nothing is validated,
  acknowledged or flow-controlled unless the test says so; the attack tests' client.
- :func:`exchange` sends any bytes and reads until the server closes
  (:func:`read_until_closed`); :func:`tls_socket`, :func:`abort` and
  :func:`connection_refused` are the other socket-level pieces.

Every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings

from .frames import ACK, DATA, GOAWAY, PREFACE, RST_STREAM, SETTINGS, Frame, take_frames
from .frames import settings as settings_frame
from .frames import window_update as window_update_frame

# How long a raw exchange may wait for the server to answer or close; loopback takes ms.
EXCHANGE_DEADLINE = 5.0


# -- sockets -----------------------------------------------------------------------------------


def tls_wrap(sock: socket.socket, alpn: Sequence[str] | None = ("h2",)) -> ssl.SSLSocket:
    """TLS over ``sock`` to the self-signed test server (not verified), offering ``alpn``."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if alpn is not None:
        context.set_alpn_protocols(list(alpn))
    return context.wrap_socket(sock, server_hostname="localhost")


def tls_socket(
    port: int, alpn: Sequence[str] | None = ("h2",), timeout: float | None = 10.0
) -> ssl.SSLSocket:
    """A TLS connection to ``port`` on loopback (see :func:`tls_wrap`)."""
    return tls_wrap(socket.create_connection(("127.0.0.1", port), timeout=timeout), alpn)


def abort(sock: socket.socket, rst: bool = True) -> None:
    """Close with RST instead of FIN (SO_LINGER 0): the rudest way to leave; or, without
    ``rst``, an ordinary close."""
    if rst:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def connection_refused(port: int) -> bool:
    """Whether a new connection to ``port`` is refused (no listener any more)."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    except (ConnectionRefusedError, ConnectionResetError):
        # Reset: the connect raced the listener's close and was dropped from its backlog.
        return True
    sock.close()
    return False


@dataclass
class Exchange:
    received: bytes
    outcome: str  # "eof", "reset" or "timeout"


def exchange(
    port: int,
    data: bytes,
    *,
    half_close: bool = False,
    sock: socket.socket | None = None,
    deadline: float = EXCHANGE_DEADLINE,
) -> Exchange:
    """Send ``data`` on a fresh connection (or ``sock``), then read until the server closes
    or ``deadline`` seconds pass; the socket is closed after."""
    sock = sock or socket.create_connection(("127.0.0.1", port), timeout=deadline)
    try:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return read_until_closed(sock, deadline)
    finally:
        sock.close()


def read_until_closed(sock: socket.socket, deadline: float = EXCHANGE_DEADLINE) -> Exchange:
    """Everything that arrives on ``sock`` until the server closes it or ``deadline`` passes."""
    received = bytearray()
    end = time.monotonic() + deadline
    while (left := end - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except (ConnectionResetError, ssl.SSLError, OSError):
            return Exchange(bytes(received), "reset")
        if not chunk:
            return Exchange(bytes(received), "eof")
        received += chunk
    return Exchange(bytes(received), "timeout")


# -- h2's client, driven by hand ---------------------------------------------------------------


@dataclass
class Response:
    stream_id: int
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset_code: int | None = None

    @property
    def status(self) -> int:
        return int(self.headers.get(b":status", b"0"))


class RawH2Client:
    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        *,
        tls: bool = False,
        settings: dict[int, int] | None = None,
        auto_ack: bool = False,
        connection_window: int | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        """``sock``: a connection already made (and wrapped, for TLS) instead of a new one."""
        if sock is None:
            sock = socket.create_connection((host, port), timeout=10)
            if tls:
                sock = tls_wrap(sock)
        self.sock = sock
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        if settings:
            self.conn.local_settings = h2.settings.Settings(client=True, initial_values=settings)
            # h2 takes initial values as already acknowledged and never applies them itself.
            frame_size = settings.get(h2.settings.SettingCodes.MAX_FRAME_SIZE)
            if frame_size:
                self.conn.max_inbound_frame_size = frame_size
                self.conn.incoming_buffer.max_frame_size = frame_size
        self.conn.initiate_connection()
        if connection_window is not None:
            self.conn.increment_flow_control_window(connection_window - 65535)
        # When False, received DATA is never acknowledged: windows stay closed until a test
        # opens them explicitly.
        self.auto_ack = auto_ack
        self.responses: dict[int, Response] = {}
        self.events: list[Any] = []
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.closed = False
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(
        self,
        path: str,
        method: str = "GET",
        extra: list[tuple[str, str]] | None = None,
        end_stream: bool = True,
    ) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        headers = [
            (b":method", method.encode()),
            (b":scheme", b"https" if isinstance(self.sock, ssl.SSLSocket) else b"http"),
            (b":authority", b"localhost"),
            (b":path", path.encode()),
        ]
        headers += [(k.encode(), v.encode()) for k, v in extra or []]
        self.conn.send_headers(stream_id, headers, end_stream=end_stream)
        self.responses[stream_id] = Response(stream_id)
        self.flush()
        return stream_id

    def receive_once(self, timeout: float) -> bool:
        """Read what arrives within ``timeout``; False on timeout or close."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except TimeoutError:
            return False
        if not data:
            self.closed = True
            return False
        for event in self.conn.receive_data(data):
            self._on_event(event)
        self.flush()
        return True

    def _on_event(self, event: Any) -> None:
        self.events.append(event)
        stream_id = getattr(event, "stream_id", None)
        response = self.responses.get(stream_id) if stream_id else None
        if isinstance(event, h2.events.ResponseReceived) and response is not None:
            response.headers = dict(event.headers)
        elif isinstance(event, h2.events.DataReceived) and response is not None:
            response.body += event.data
            if self.auto_ack and event.flow_controlled_length:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded) and response is not None:
            response.ended = True
        elif isinstance(event, h2.events.StreamReset) and response is not None:
            response.reset_code = int(event.error_code)
            response.ended = True
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event

    def until(self, condition: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return condition()
            self.receive_once(min(left, 0.5))
        return True

    def quiet_for(self, seconds: float) -> int:
        """Read for ``seconds``; return how many body bytes arrived meanwhile."""
        before = sum(len(r.body) for r in self.responses.values())
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and not self.closed:
            self.receive_once(left)
        return sum(len(r.body) for r in self.responses.values()) - before

    def open_window(self, stream_id: int | None, increment: int) -> None:
        self.conn.increment_flow_control_window(increment, stream_id=stream_id)
        self.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class UploadClient(RawH2Client):
    """RawH2Client that can stream a request body under the server's windows, processing
    the server's frames as it goes (and keeping trailers)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_ack", True)
        super().__init__(*args, **kwargs)
        self.trailers: dict[int, dict[bytes, bytes]] = {}
        self.sent: dict[int, int] = {}

    def _on_event(self, event: Any) -> None:
        if isinstance(event, h2.events.TrailersReceived):
            self.trailers[event.stream_id] = dict(event.headers)
        super()._on_event(event)

    def window(self, stream_id: int) -> int:
        try:
            return int(self.conn.local_flow_control_window(stream_id))
        except Exception:  # the stream is closed (reset by the server)
            return 0

    def send_some(self, stream_id: int, data: memoryview, end: bool) -> int:
        """Send as much of ``data`` as the windows allow now; returns bytes sent."""
        sent = 0
        while sent < len(data):
            window = self.window(stream_id)
            if window <= 0:
                break
            n = min(window, self.conn.max_outbound_frame_size, len(data) - sent)
            last = end and sent + n == len(data)
            self.conn.send_data(stream_id, bytes(data[sent : sent + n]), end_stream=last)
            sent += n
        self.flush()
        self.sent[stream_id] = self.sent.get(stream_id, 0) + sent
        return sent

    def upload(
        self, stream_id: int, body: bytes, *, end: bool = True, timeout: float = 30.0
    ) -> int:
        """Send ``body`` as the server's credit allows (reading its frames meanwhile).

        Returns the bytes sent: all of them, unless the stream was reset or the deadline hit.
        """
        view = memoryview(body)
        pos = 0
        deadline = time.monotonic() + timeout
        response = self.responses[stream_id]
        while pos < len(view) and time.monotonic() < deadline and not self.closed:
            if response.reset_code is not None:
                break
            pos += self.send_some(stream_id, view[pos:], end)
            if pos < len(view):
                self.receive_once(0.2)
        if end and not body:
            self.conn.end_stream(stream_id)
            self.flush()
        return pos


def request(
    port: int,
    path: str,
    method: str = "GET",
    headers: list[tuple[str, str]] | None = None,
    *,
    tls: bool = False,
    timeout: float = 30.0,
    connection_window: int | None = None,
) -> Response:
    """One request on a fresh connection (``:path`` and headers sent verbatim); the whole
    response, read within ``timeout``."""
    client = RawH2Client(port, tls=tls, auto_ack=True, connection_window=connection_window)
    try:
        stream_id = client.request(path, method=method, extra=headers)
        response = client.responses[stream_id]
        assert client.until(lambda: response.ended, timeout), f"{method} {path}: no response"
        return response
    finally:
        client.close()


def fetch(port: int, path: str, timeout: float = 10) -> bytes:
    """A well-behaved client: one connection, one request, the whole body or an assertion."""
    response = request(port, path, timeout=timeout, connection_window=1 << 30)
    assert response.status == 200 and response.reset_code is None, (
        f"{path}: status {response.status}, reset {response.reset_code}"
    )
    return bytes(response.body)


# -- raw frames --------------------------------------------------------------------------------


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
            opening = settings_frame() + (window_update_frame(0, grow) if grow else b"")
            self.send(PREFACE + opening + initial)

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
        got, used = take_frames(self._buffer)
        del self._buffer[:used]
        for received in got:
            self.frames.append(received)
            if received.kind == SETTINGS and not received.flags & ACK and self._ack_settings:
                self.send(settings_frame(ack=True))

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
