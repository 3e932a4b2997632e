"""The one writer of a connection: queued bytes through the transport, file payloads by sendfile.

Order is the invariant. Bytes are queued here and flushed to the transport before any
zero-copy frame; a zero-copy frame goes to the kernel directly (header by ``send(MSG_MORE)`` on
a duplicate of the socket, payload by ``os.sendfile``) only while the transport's buffer is
empty, which uvloop guarantees means everything before it is already in the kernel. When the
socket fills mid-frame, the rest of that frame is read into memory and handed to the transport,
whose ``pause_writing`` then stops the scheduler until it has drained.
"""

from __future__ import annotations

import asyncio
import os
import socket

from .stats import STATS

# Queued bytes are handed to the transport once they reach this size, so a copy-path turn
# never holds more than about this much before the transport decides whether to pause.
FLUSH_AT = 256 * 1024

_MSG_MORE = getattr(socket, "MSG_MORE", 0)


class TransportSink:
    """Implements :class:`h2stream.bodies.FrameSink` on an asyncio/uvloop transport."""

    __slots__ = (
        "_parts",
        "_pending",
        "_sock",
        "_sock_fd",
        "_transport",
        "use_sendfile",
        "writable",
    )

    def __init__(self, transport: asyncio.Transport, raw_socket: socket.socket | None) -> None:
        self._transport = transport
        self._parts: list[bytes | bytearray | memoryview] = []
        self._pending = 0
        # A duplicate of the transport's socket, for send(MSG_MORE) and sendfile only; it is
        # never registered with the loop.
        self._sock = raw_socket
        self._sock_fd = raw_socket.fileno() if raw_socket is not None else -1
        self.use_sendfile = raw_socket is not None
        self.writable = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._parts.append(data)
        self._pending += len(data)
        if self._pending >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        parts = self._parts
        if not parts:
            return
        self._parts = []
        self._pending = 0
        if len(parts) == 1:
            self._transport.write(parts[0])
        else:
            self._transport.write(b"".join(parts))

    def send_file_frame(self, header: bytes, fd: int, offset: int, count: int) -> int:
        self.flush()
        transport = self._transport
        if not self.writable or transport.get_write_buffer_size():
            return self._copy_rest(header, fd, offset, count)
        assert self._sock is not None
        try:
            sent_header = self._sock.send(header, _MSG_MORE)
        except BlockingIOError:
            sent_header = 0
        if sent_header < len(header):
            return self._copy_rest(header[sent_header:], fd, offset, count)
        try:
            sent = os.sendfile(self._sock_fd, fd, offset, count)
        except BlockingIOError:
            sent = 0
        STATS.body_bytes_sendfile += sent
        if sent == count:
            return count
        # Socket full mid-frame (or the file ended early): finish the frame through the
        # transport, which then pauses us until it drains.
        return sent + self._copy_rest(b"", fd, offset + sent, count - sent)

    def _copy_rest(self, prefix: bytes, fd: int, offset: int, count: int) -> int:
        payload = os.pread(fd, count, offset)
        got = len(payload)
        STATS.body_bytes_copy += got
        if got < count:
            # The file shrank under us. The header promised ``count`` bytes: zero-fill to keep
            # the connection's framing; the caller resets the stream.
            payload += bytes(count - got)
        self._transport.write(prefix + payload if prefix else payload)
        return got

    def close(self) -> None:
        self._parts = []
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self.use_sendfile = False
