"""The HTTP/1.1 writer: the HTTP/2 writer's transport, socket and ordering, without frames.

Bodies write DATA frames (a 9-byte header, then its payload, or both in one write); this sink
unwraps them: a payload goes out as raw bytes under ``content-length`` or as one chunk under
``transfer-encoding: chunked``, and END_STREAM ends the frame stream (the connection writes the
last chunk). A file range on cleartext is one ``os.sendfile`` of the whole run after the head
(sent with MSG_MORE when the transport is empty), under the same rule as the HTTP/2 writer:
the kernel is touched directly only while the transport holds nothing, and a socket that fills
leaves the next piece to the transport, whose ``pause_writing`` then stops the body.
"""

from __future__ import annotations

import os

from h2stream.core.frames import DATA_HEADER
from h2stream.core.stats import STATS
from h2stream.io.sink import MSG_MORE, TransportSink

# What goes through the transport when the socket is full: enough to get its pause/resume
# callbacks (the only way to learn when the socket drains), little enough to keep the share
# of zero-copy near 100%.
PIECE = 16384


class Http1TransportSink(TransportSink):
    """:class:`h2stream.http1.connection.Http1Sink` on an asyncio/uvloop transport."""

    __slots__ = ("_chunk_open", "_chunked", "_left", "_sendfile")

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._chunked = False
        self._left = 0
        self._chunk_open = False
        self._sendfile = self.use_sendfile

    def start_body(self, chunked: bool) -> None:
        self._chunked = chunked
        self._left = 0
        self._chunk_open = False
        # Zero-copy sends raw bytes: never inside chunks.
        self.use_sendfile = self._sendfile and not chunked

    # Bytes that are not a body frame go out as queued bytes: the base class's write itself,
    # with no call in between (a head and its in-memory body per response).
    write_raw = TransportSink.write

    def write(self, data: bytes | bytearray | memoryview) -> None:
        left = self._left
        if left:
            self._left = left - len(data)
            TransportSink.write(self, data)
            if self._left <= 0 and self._chunk_open:
                self._chunk_open = False
                TransportSink.write(self, b"\r\n")
            return
        # A frame header, perhaps with its payload. END_STREAM is not read here: the body
        # reports done, and the connection writes the end (the last chunk, trailers).
        n = DATA_HEADER.unpack_from(data)[0] >> 8
        payload = memoryview(data)[9:]
        if not n:
            return
        if self._chunked:
            TransportSink.write(self, b"%x\r\n" % n)
            self._chunk_open = True
        self._left = n
        if payload:
            self.write(payload)

    def copy_file_frames(
        self,
        stream_id: int,
        fd: int,
        offset: int,
        count: int,
        max_frame: int,
        end_stream: bool,
        following: int = 0,
    ) -> int:
        """One read, one write (one chunk if chunked): no frames to lay out."""
        try:
            payload = os.pread(fd, count, offset)
        except OSError:
            return 0
        if len(payload) < count:
            return len(payload)
        if self._chunked:
            TransportSink.write(self, b"%x\r\n" % count)
            TransportSink.write(self, payload)
            TransportSink.write(self, b"\r\n")
        else:
            TransportSink.write(self, payload)
        return count

    def send_file_frames(
        self, stream_id: int, fd: int, offset: int, count: int, max_frame: int
    ) -> tuple[int, bool]:
        transport = self._transport
        sock = self._sock
        if not self.writable or transport.get_write_buffer_size() or sock is None:
            self.flush()
            return self._piece(fd, offset, count)
        parts = self._parts
        if parts:
            # The head: in the same TCP segment as the file's first bytes.
            self._parts = []
            self._pending = 0
            head = b"".join(parts)
            try:
                sent = sock.send(head, MSG_MORE)
            except BlockingIOError:
                sent = 0
            except ConnectionError:
                return self._peer_gone(0)
            if sent < len(head):
                transport.write(head[sent:])
                return self._piece(fd, offset, count)
        try:
            sent = os.sendfile(self._sock_fd, fd, offset, count)
        except BlockingIOError:
            sent = 0
        except ConnectionError:
            return self._peer_gone(0)
        except OSError:
            return 0, False  # an unreadable file: the connection closes, the body is cut
        STATS.body_bytes_sendfile += sent
        if sent == count:
            return sent, True
        if sent and self._send_tail(fd, offset + sent, count - sent):
            return count, True  # the rest follows by sendfile as the socket drains
        done, complete = self._piece(fd, offset + sent, count - sent)
        return sent + done, complete

    def _piece(self, fd: int, offset: int, count: int) -> tuple[int, bool]:
        """A little of the file through the transport, so it pauses us until it drains."""
        n = min(PIECE, count)
        try:
            payload = os.pread(fd, n, offset)
        except OSError:
            return 0, False
        self._transport.write(payload)
        STATS.body_bytes_copy += len(payload)
        return len(payload), len(payload) == n
