"""A narrow subclass of h2's connection, and a stateless HPACK encoder for our responses.

Two of h2's costs sit on every request of a busy server: ``open_inbound_streams`` walks every
stream on each new HEADERS frame, and ``send_headers`` runs the full HPACK encoder (table
search, indexing) on headers we generated ourselves. The session counts its own streams and
enforces MAX_CONCURRENT_STREAMS itself (answering REFUSED_STREAM, where h2 would end the whole
connection), and response header blocks are encoded without touching the dynamic table, which
makes every encoded field a pure function of (name, value) and so cacheable.
"""

from __future__ import annotations

from collections.abc import Iterable

import h2.connection
from hpack.hpack import Encoder, HuffmanEncoder, encode_integer
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.table import HeaderTable

# Sweep h2's table of closed streams every this many finished streams (h2 does it on every
# HEADERS frame, which costs O(open streams) per request).
_SWEEP_EVERY = 256


class ServerConnection(h2.connection.H2Connection):
    """h2's connection with stream counting handed to the session."""

    _finished_since_sweep = 0

    @property
    def open_inbound_streams(self) -> int:
        # The session enforces the limit with REFUSED_STREAM; h2 would answer a connection
        # error (TooManyStreamsError) instead.
        return 0

    def stream_finished(self) -> None:
        """Called as each stream leaves the session; sweeps h2's closed streams now and then."""
        self._finished_since_sweep += 1
        if self._finished_since_sweep >= _SWEEP_EVERY:
            self._finished_since_sweep = 0
            self._open_streams(1)


_STATIC_FULL: dict[tuple[bytes, bytes], int] = {}
_STATIC_NAME: dict[bytes, int] = {}
for _index, (_name, _value) in enumerate(HeaderTable.STATIC_TABLE, start=1):
    _STATIC_FULL.setdefault((_name, _value), _index)
    _STATIC_NAME.setdefault(_name, _index)

_HUFFMAN = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
_FIELD_CACHE_MAX = 4096
# Encoded fields are pure functions of (name, value): one cache serves every connection.
_FIELDS: dict[tuple[bytes, bytes], bytes] = {}


def _string(data: bytes) -> bytes:
    """An HPACK string literal, Huffman-coded when that is shorter."""
    coded = _HUFFMAN.encode(data)
    if len(coded) < len(data):
        prefix = encode_integer(len(coded), 7)
        prefix[0] |= 0x80
        return bytes(prefix) + coded
    return bytes(encode_integer(len(data), 7)) + data


def encode_field(name: bytes, value: bytes) -> bytes:
    """One field: a static-table index, or a literal that is never added to the dynamic table."""
    index = _STATIC_FULL.get((name, value))
    if index is not None:
        block = encode_integer(index, 7)
        block[0] |= 0x80
        return bytes(block)
    name_index = _STATIC_NAME.get(name)
    if name_index is not None:
        # "Literal Header Field without Indexing -- Indexed Name" (RFC 7541 section 6.2.2).
        return bytes(encode_integer(name_index, 4)) + _string(value)
    return b"\x00" + _string(name) + _string(value)


class ResponseHeaderEncoder:
    """Encodes response header blocks with no dynamic-table state, caching each field.

    h2's own encoder stays the one that announces dynamic table size updates the peer asked
    for: a pending update is emitted at the start of our next block, as RFC 7541 section 4.2
    requires.
    """

    def __init__(self, h2_encoder: Encoder) -> None:
        self._h2_encoder = h2_encoder

    def encode(self, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
        """The fields alone; :meth:`table_update` must go in front when it is not empty."""
        fields = _FIELDS
        parts = []
        for header in headers:
            encoded = fields.get(header)
            if encoded is None:
                if len(fields) >= _FIELD_CACHE_MAX:
                    fields.clear()
                encoded = fields[header] = encode_field(*header)
            parts.append(encoded)
        return b"".join(parts)

    def table_update(self) -> bytes:
        """A pending dynamic table size update, consumed by this call (usually empty)."""
        table = self._h2_encoder.header_table
        if not table.resized:
            return b""
        table.resized = False
        return self._h2_encoder._encode_table_size_change()
