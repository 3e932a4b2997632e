"""gRPC's wire format over HTTP/2: status codes, the 5-byte message prefix, timeouts, and the
request-message reader that gives window credit back only as the handler reads."""

from __future__ import annotations

import asyncio
import collections
import enum
import struct
import zlib
from collections.abc import Callable

from h2stream.core.exchange import Exchange, Headers

# Compressed flag (one byte) and length (four, big-endian) before every message.
PREFIX = struct.Struct(">BI")
CONTENT_TYPE = b"application/grpc"
# What we can decode, sent with every response (grpc-accept-encoding).
ACCEPT_ENCODING = b"identity,gzip"
DEFAULT_MAX_MESSAGE = 4 * 1024 * 1024  # grpc's own default receive limit


class Status(enum.IntEnum):
    """gRPC status codes (grpc/doc/statuscodes.md)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class GrpcError(Exception):
    """Ends the call with ``status`` and ``message`` (raise it from a handler)."""

    def __init__(self, status: Status, message: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_STATUS_BYTES = {status: str(int(status)).encode() for status in Status}


def percent_encode(message: str) -> bytes:
    """grpc-message: UTF-8, with '%' and bytes outside printable ASCII as %XX."""
    out = bytearray()
    for byte in message.encode("utf-8"):
        if 0x20 <= byte <= 0x7E and byte != 0x25:
            out.append(byte)
        else:
            out += b"%%%02X" % byte
    return bytes(out)


def status_fields(status: Status, message: str = "") -> Headers:
    fields = [(b"grpc-status", _STATUS_BYTES[status])]
    if message:
        fields.append((b"grpc-message", percent_encode(message)))
    return fields


_TIMEOUT_UNITS = {
    ord("H"): 3600.0,
    ord("M"): 60.0,
    ord("S"): 1.0,
    ord("m"): 1e-3,
    ord("u"): 1e-6,
    ord("n"): 1e-9,
}


def parse_timeout(value: bytes) -> float | None:
    """grpc-timeout (at most 8 digits and a unit) in seconds; None if malformed."""
    if not 2 <= len(value) <= 9 or not value[:-1].isdigit():
        return None
    unit = _TIMEOUT_UNITS.get(value[-1])
    return None if unit is None else int(value[:-1]) * unit


def gzip_compress(payload: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)
    return packer.compress(payload) + packer.flush()


def gzip_decompress(payload: bytes, limit: int) -> bytes:
    """Inflate a gzip message, refusing one that grows past ``limit`` (a zip bomb)."""
    unpacker = zlib.decompressobj(31)
    try:
        data = unpacker.decompress(payload, limit + 1)
    except zlib.error as exc:
        raise GrpcError(Status.INTERNAL, "malformed gzip message") from exc
    if len(data) > limit:
        raise GrpcError(Status.RESOURCE_EXHAUSTED, f"message larger than {limit} bytes")
    return data


class MessageReader:
    """Request messages as they arrive (a :class:`~h2stream.core.exchange.RequestBodySink`).

    Credit for a complete message goes back only when the handler reads it, so a slow
    reader holds at most a window of messages; the bytes of an incomplete message get their
    credit back at once, because the reader needs the rest of it (a message may be larger
    than the window; ``max_size`` bounds what that can hold).
    """

    __slots__ = (
        "_buf",
        "_credited",
        "_ended",
        "_error",
        "_exchange",
        "_gzip",
        "_max",
        "_messages",
        "_waiter",
        "bytes_in",
        "messages_in",
        "on_end",
    )

    def __init__(self, exchange: Exchange, max_size: int, gzip: bool) -> None:
        self._exchange = exchange
        self._max = max_size
        self._gzip = gzip
        self._buf = bytearray()
        # Bytes at the start of _buf whose credit was already given back.
        self._credited = 0
        # Complete messages not yet read, each with the credit it still holds.
        self._messages: collections.deque[tuple[bytes, int]] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False
        self._error: BaseException | None = None
        self.messages_in = 0
        self.bytes_in = 0
        # Called once, when the request has ended (or failed): a handler that needs the whole
        # request starts then (see GrpcService).
        self.on_end: Callable[[], None] | None = None

    def feed(self, data: bytes, flow_controlled_length: int) -> None:
        consumed = self._exchange.consumed
        if self._error is not None:
            consumed(flow_controlled_length)
            return
        if flow_controlled_length > len(data):
            consumed(flow_controlled_length - len(data))  # padding: nobody reads it
        buf = self._buf
        buf += data
        pos = 0
        size = len(buf)
        while size - pos >= 5:
            flag, length = PREFIX.unpack_from(buf, pos)
            if length > self._max:
                consumed(len(data))
                self._fail(
                    GrpcError(Status.RESOURCE_EXHAUSTED, f"message larger than {self._max} bytes")
                )
                return
            total = 5 + length
            if size - pos < total:
                break
            payload = bytes(buf[pos + 5 : pos + total])
            if flag:
                if not self._gzip:
                    consumed(len(data))
                    self._fail(GrpcError(Status.INTERNAL, "compressed message, no grpc-encoding"))
                    return
                try:
                    payload = gzip_decompress(payload, self._max)
                except GrpcError as exc:
                    consumed(len(data))
                    self._fail(exc)
                    return
            credited = min(self._credited, total)
            self._credited -= credited
            self._messages.append((payload, total - credited))
            pos += total
        if pos:
            del buf[:pos]
        owed = len(buf) - self._credited
        if owed > 0:
            consumed(owed)
            self._credited = len(buf)
        if self._messages:
            self._wake()

    def end(self, error: BaseException | None = None) -> None:
        if error is not None:
            self._fail(error)
            return
        if self._buf and self._error is None:
            self._error = GrpcError(Status.INTERNAL, "request ended inside a message")
        self._ended = True
        self._wake()

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._ended = True
        self._messages.clear()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._ended:
            on_end = self.on_end
            if on_end is not None:
                self.on_end = None
                on_end()

    async def read(self) -> bytes | None:
        """The next message, or None after the last; raises a broken request's error."""
        while True:
            messages = self._messages
            if messages:
                payload, credit = messages.popleft()
                if credit:
                    self._exchange.consumed(credit)
                self.messages_in += 1
                self.bytes_in += len(payload)
                return payload
            if self._error is not None:
                raise self._error
            if self._ended:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None


Decoder = Callable[[bytes], object]
Encoder = Callable[[object], bytes]
