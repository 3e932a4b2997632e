"""HPACK for the server: a decoder with fast paths for repeated request blocks, and a stateless
encoder for our own responses.

``send_headers`` would run hpack's full encoder (table search, indexing) on headers we generated
ourselves. Response header blocks are encoded here without touching the dynamic table, which
makes every encoded field a pure function of (name, value) and so cacheable; h2's encoder stays
the one that announces table size changes the peer asked for.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import h2.exceptions
from h2.errors import ErrorCodes
from hpack.exceptions import HPACKDecodingError, HPACKError, OversizedHeaderListError
from hpack.hpack import (
    DEFAULT_MAX_HEADER_LIST_SIZE,
    Decoder,
    Encoder,
    HuffmanEncoder,
    encode_integer,
)
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.table import HeaderTable

from h2stream.core.limits import HeaderFieldsError

# Decoded header blocks kept per connection (see IndexedFastDecoder._decode_cached), bounded
# in count and in bytes (raw block plus decoded fields): 64 blocks of 60 KB would be 7.8 MiB
# per connection. A block larger than _BLOCK_CACHED_MAX is never worth keeping: repeated
# request blocks are a few hundred bytes.
_BLOCK_CACHE_MAX = 64
_BLOCK_CACHE_BYTES = 32 * 1024
_BLOCK_CACHED_MAX = 2048
# Header fields in one block when no cap is configured (the server sets max_fields).
DEFAULT_MAX_FIELDS = 512


class HeaderCompressionError(h2.exceptions.ProtocolError):
    """A field block that does not decode: RFC 9113 section 4.3 makes that a connection error
    of type COMPRESSION_ERROR (h2 reports PROTOCOL_ERROR)."""

    error_code = ErrorCodes.COMPRESSION_ERROR


class IndexedFastDecoder(Decoder):
    """hpack's decoder with a fast path for blocks made only of table references.

    A client that repeats a request sends a block of one-byte indexed fields after the first
    time (h2load does, and so do browsers for most fields). Such a block changes no table
    state, so it decodes to plain lookups; anything else goes through hpack as before.
    """

    # Fields one block may hold (Config.max_header_fields): decoding stops past it, so a
    # block of 1,500 tiny fields costs no more than one of this many.
    max_fields = DEFAULT_MAX_FIELDS

    def __init__(self, max_header_list_size: int = DEFAULT_MAX_HEADER_LIST_SIZE) -> None:
        super().__init__(max_header_list_size)
        # Blocks that left the dynamic table as it was, decoded: valid until the table
        # changes (see _decode_cached). Created on first use: an idle connection has none.
        self._blocks: dict[bytes, list[Any]] | None = None
        self._blocks_bytes = 0
        self._table_mark: tuple[object, int] = (None, 0)

    def forget_blocks(self) -> None:
        """Drop the decoded blocks kept (the connection is gone)."""
        self._blocks = None
        self._blocks_bytes = 0

    def decode(self, data: bytes, raw: bool = False) -> Any:
        try:
            if raw:
                return self._decode_cached(data)
            return super().decode(data, raw)
        except OversizedHeaderListError:
            raise  # h2 answers it as a denial of service (ENHANCE_YOUR_CALM)
        except (HPACKError, IndexError, TypeError, UnicodeDecodeError) as exc:
            raise HeaderCompressionError(f"cannot decode header block: {exc}") from exc

    def _decode_cached(self, data: bytes) -> list[Any]:
        """Blocks that add nothing to the table (indexed fields and literals without
        indexing: what browsers, h2load and most clients repeat request after request) decode
        the same while the table is unchanged. Any insertion puts a new entry object at the
        table's front, so the front entry's identity and the table length tell whether cached
        blocks still hold."""
        entries = self.header_table.dynamic_entries
        mark = (entries[0] if entries else None, len(entries))
        blocks = self._blocks
        if blocks is None:
            blocks = self._blocks = {}
        if self._table_mark[0] is not mark[0] or self._table_mark[1] != mark[1]:
            blocks.clear()
            self._blocks_bytes = 0
            self._table_mark = mark
        cached = blocks.get(data)
        if cached is not None:
            # What every decode ends with (hpack's _assert_valid_table_size, inline).
            if self.header_table.maxsize > self.max_allowed_table_size:
                self._assert_valid_table_size()  # raises, with hpack's message
            return list(cached)
        if min(data, default=0) >= 0x80 and data.find(b"\xff") < 0:
            # Every byte an indexed field (0xff would start a multi-byte index).
            if len(data) > self.max_fields:
                raise HeaderFieldsError(self.max_fields)
            headers = self._decode_indexed_only(data)
        else:
            headers = self._decode_counted(data)
        entries = self.header_table.dynamic_entries
        size = len(data)
        if (
            size <= _BLOCK_CACHED_MAX
            and (entries[0] if entries else None) is mark[0]
            and len(entries) == mark[1]
        ):
            # The decoded fields cost about as much again as the block, plus the list.
            cost = 2 * size + 64 + 8 * len(headers)
            if len(blocks) >= _BLOCK_CACHE_MAX or self._blocks_bytes + cost > _BLOCK_CACHE_BYTES:
                blocks.clear()
                self._blocks_bytes = 0
            blocks[bytes(data)] = list(headers)
            self._blocks_bytes += cost
        return headers

    def _decode_counted(self, data: bytes) -> list[Any]:
        """hpack's decoding loop (RFC 7541 section 6: the representation is told by the first
        byte's high bits), with the field count capped as it goes: hpack would decode the
        whole block first (7.6 ms for 1,500 fields here), whatever our cap."""
        view = memoryview(data)
        headers: list[Any] = []
        limit = self.max_fields
        cap = self.max_header_list_size
        size = 0
        pos = 0
        end = len(data)
        while pos < end:
            first = data[pos]
            if first & 0x80:
                header, used = self._decode_indexed(view[pos:])
            elif first & 0x40:
                header, used = self._decode_literal_index(view[pos:])
            elif first & 0x20:
                if headers:
                    raise HPACKDecodingError("table size update after a field")
                pos += self._update_encoding_context(view[pos:])
                continue
            else:
                header, used = self._decode_literal_no_index(view[pos:])
            pos += used
            headers.append(header)
            if len(headers) > limit:
                raise HeaderFieldsError(limit)
            size += len(header[0]) + len(header[1]) + 32
            if size > cap:
                raise OversizedHeaderListError(f"A header list larger than {cap} has been received")
        self._assert_valid_table_size()
        return headers

    def _decode_indexed_only(self, data: bytes) -> list[tuple[bytes, bytes]]:
        get = self.header_table.get_by_index
        headers = [get(byte & 0x7F) for byte in data]
        size = 0
        for name, value in headers:
            size += len(name) + len(value) + 32
        if size > self.max_header_list_size:
            raise OversizedHeaderListError(
                f"A header list larger than {self.max_header_list_size} has been received"
            )
        self._assert_valid_table_size()
        return headers


_STATIC_FULL: dict[tuple[bytes, bytes], int] = {}
_STATIC_NAME: dict[bytes, int] = {}
for _index, (_name, _value) in enumerate(HeaderTable.STATIC_TABLE, start=1):
    _STATIC_FULL.setdefault((_name, _value), _index)
    _STATIC_NAME.setdefault(_name, _index)

_HUFFMAN = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
_FIELD_CACHE_MAX = 4096
# Fields longer than this (name plus value) are encoded each time, never cached: a response
# header may echo request data (a location, an app's header), and the cache is per worker.
_FIELD_CACHED_MAX = 256
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


def _raw_string(data: bytes) -> bytes:
    """An HPACK string literal without Huffman coding."""
    length = len(data)
    if length < 127:  # the length fits the 7-bit prefix: one byte, no hpack call
        return length.to_bytes(1, "big") + data
    return bytes(encode_integer(length, 7)) + data


# Fields whose value is unique per response (request ids): caching them would only evict
# reusable entries, and Huffman-coding a 32-character value costs about 10 us in pure Python,
# so they are sent as plain literals behind a pre-encoded name.
_UNCACHED: dict[bytes, bytes] = {b"x-request-id": b"\x00" + _string(b"x-request-id")}


# Response heads (``:status`` and a handler's field list) already encoded, per list: most
# responses repeat a list another response had (a small file's plan is one list shared by all
# its plain GETs). id(list) -> (the list, a copy of it, status, block): a hit must be the same
# object, unchanged since (the copy), with the same status. Shared by every connection, as
# _FIELDS is; past _HEADS_MAX entries it starts afresh.
_HEADS: dict[int, tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]], bytes, bytes]] = {}
_HEADS_MAX = 256


def encode_fields(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Response fields as an HPACK block that uses no dynamic-table state (each field
    indexed from the static table or a literal without indexing), so any connection may send
    it; each field's encoding is cached."""
    fields = _FIELDS
    parts = []
    for header in headers:
        encoded = fields.get(header)
        if encoded is None:
            literal = _UNCACHED.get(header[0])
            if literal is not None:
                parts.append(literal + _raw_string(header[1]))
                continue
            encoded = encode_field(*header)
            if len(header[0]) + len(header[1]) <= _FIELD_CACHED_MAX:
                if len(fields) >= _FIELD_CACHE_MAX:
                    fields.clear()
                fields[header] = encoded
        parts.append(encoded)
    return b"".join(parts)


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
        return encode_fields(headers)

    def response(self, status: bytes, headers: list[tuple[bytes, bytes]], tail: bytes) -> bytes:
        """``:status`` and ``headers`` as a block, memoized per list, then ``tail``: the
        per-response fields (date, server, a request id) as :func:`encode_fields` gave them."""
        entry = _HEADS.get(id(headers))
        if entry is not None and entry[0] is headers and entry[2] == status and entry[1] == headers:
            return entry[3] + tail
        head = encode_fields([(b":status", status), *headers])
        if len(_HEADS) >= _HEADS_MAX:
            _HEADS.clear()
        _HEADS[id(headers)] = (headers, list(headers), status, head)
        return head + tail

    def table_update(self) -> bytes:
        """A pending dynamic table size update, consumed by this call (usually empty)."""
        table = self._h2_encoder.header_table
        if not table.resized:
            return b""
        table.resized = False
        return self._h2_encoder._encode_table_size_change()
