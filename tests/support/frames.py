"""Raw HTTP/2 frames: the one builder of crafted frames and the one parser of received bytes.

Built here with a struct of our own, not the server's ``h2stream.core.frames``: a test that
crafts or reads frames must not share a mistake with the code it checks. Header blocks are
encoded without the dynamic table, so every block stands alone.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import h2.errors
import hpack
import hyperframe.frame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HEADER = struct.Struct(">IBI")  # 24-bit length << 8 | type, flags, stream id
HEADER_SIZE = 9

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY = range(8)
WINDOW_UPDATE, CONTINUATION = 8, 9
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4

NO_ERROR = int(h2.errors.ErrorCodes.NO_ERROR)
PROTOCOL_ERROR = int(h2.errors.ErrorCodes.PROTOCOL_ERROR)
INTERNAL_ERROR = int(h2.errors.ErrorCodes.INTERNAL_ERROR)
REFUSED_STREAM = int(h2.errors.ErrorCodes.REFUSED_STREAM)
CANCEL = int(h2.errors.ErrorCodes.CANCEL)
FRAME_SIZE_ERROR = int(h2.errors.ErrorCodes.FRAME_SIZE_ERROR)
ENHANCE_YOUR_CALM = int(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)


# -- building ----------------------------------------------------------------------------------


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """Any frame, valid or not: the length is the payload's, everything else as given."""
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


def request_block(path: str | bytes = "/hello.txt", method: str = "GET", extra: int = 0) -> bytes:
    """A request header block, encoded without the dynamic table (so blocks are standalone);
    a ``path`` given as bytes goes out as it is, even when it is not UTF-8."""
    encoder = hpack.Encoder()
    fields = [
        (b":method", method.encode()),
        (b":scheme", b"http"),
        (b":authority", b"localhost"),
        (b":path", path if isinstance(path, bytes) else path.encode()),
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


# -- parsing -----------------------------------------------------------------------------------


@dataclass
class Frame:
    kind: int
    flags: int
    stream_id: int
    payload: bytes

    @property
    def length(self) -> int:
        return len(self.payload)

    @property
    def error_code(self) -> int:
        """For GOAWAY and RST_STREAM."""
        if self.kind == GOAWAY:
            return int(struct.unpack(">I", self.payload[4:8])[0])
        return int(struct.unpack(">I", self.payload[:4])[0])

    @property
    def last_stream_id(self) -> int:
        return int(struct.unpack(">I", self.payload[:4])[0]) & 0x7FFFFFFF


def _bounds(data: bytes | bytearray | memoryview) -> Iterator[tuple[int, int]]:
    """(start, end) of each whole frame at the front of ``data``; stops at a partial one."""
    pos = 0
    size = len(data)
    while size - pos >= HEADER_SIZE:
        end = pos + HEADER_SIZE + (_HEADER.unpack_from(data, pos)[0] >> 8)
        if end > size:
            return
        yield pos, end
        pos = end


def take_frames(data: bytes | bytearray | memoryview) -> tuple[list[Frame], int]:
    """The whole frames at the front of ``data``, and how many bytes they take (a reader
    keeps the rest for when more arrives)."""
    frames = []
    used = 0
    for start, end in _bounds(data):
        word, flags, stream_id = _HEADER.unpack_from(data, start)
        payload = bytes(data[start + HEADER_SIZE : end])
        frames.append(Frame(word & 0xFF, flags, stream_id & 0x7FFFFFFF, payload))
        used = end
    return frames, used


def parse_frames(data: bytes | bytearray | memoryview, *, whole: bool = True) -> list[Frame]:
    """Every frame in ``data``. With ``whole`` (the default) the data must end on a frame
    boundary; without it, a partial frame at the end (a connection cut short) is left out."""
    frames, used = take_frames(data)
    if whole:
        assert used == len(data), f"a truncated frame at byte {used} of {len(data)}"
    return frames


def data_frames(data: bytes | bytearray | memoryview) -> list[tuple[int, int, bytes]]:
    """(length, flags, payload) of each frame in ``data``: whole frames, all of them DATA."""
    frames = parse_frames(data)
    assert all(f.kind == DATA for f in frames), [f.kind for f in frames]
    return [(f.length, f.flags, f.payload) for f in frames]


def split_frames(data: bytes) -> Iterator[tuple[hyperframe.frame.Frame, bytes]]:
    """Each frame in ``data`` as hyperframe parses it, with its raw bytes (to feed to an h2
    client); the data must hold whole frames only."""
    view = memoryview(data)
    end = 0
    for start, end in _bounds(view):
        parsed, _ = hyperframe.frame.Frame.parse_frame_header(view[start : start + HEADER_SIZE])
        parsed.parse_body(view[start + HEADER_SIZE : end])
        yield parsed, bytes(view[start:end])
    assert end == len(view), f"a truncated frame at byte {end} of {len(view)}"
