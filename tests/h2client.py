"""A raw, blocking HTTP/2 client on a real socket, for protocol edge cases.

It drives h2's client side by hand so a test controls every frame: when windows are opened,
what is sent, and what arrived. Every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings


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
    ) -> None:
        sock = socket.create_connection((host, port), timeout=10)
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            context.set_alpn_protocols(["h2"])
            sock = context.wrap_socket(sock, server_hostname="localhost")
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
