"""Frame headers: the one place that packs HTTP/2 frame headers (RFC 9113 section 4.1).

Callers on the per-frame hot path bind :data:`DATA_HEADER`'s ``pack`` to a local name and call
it as ``pack(length << 8, flags, stream_id)``: the 24-bit length and the 8-bit type share one
32-bit word, so one ``struct`` call builds the whole 9-byte header (DATA is type 0).
"""

from __future__ import annotations

import struct

# Length and type as one word, then flags, then the stream id.
FRAME_HEADER = struct.Struct(">IBI")
DATA_HEADER = FRAME_HEADER
FRAME_HEADER_SIZE = 9
TYPE_DATA = 0x0
TYPE_HEADERS = 0x1
FLAG_END_STREAM = 0x1
FLAG_END_HEADERS = 0x4


def data_header(length: int, stream_id: int, end_stream: bool = False) -> bytes:
    """The 9-byte header of a DATA frame of ``length`` payload bytes."""
    return FRAME_HEADER.pack(length << 8, FLAG_END_STREAM if end_stream else 0, stream_id)


def headers_header(length: int, stream_id: int, end_stream: bool) -> bytes:
    """The header of a HEADERS frame carrying a whole header block (END_HEADERS set)."""
    flags = FLAG_END_HEADERS | FLAG_END_STREAM if end_stream else FLAG_END_HEADERS
    return FRAME_HEADER.pack(length << 8 | TYPE_HEADERS, flags, stream_id)
