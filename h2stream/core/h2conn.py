"""A narrow subclass of h2's connection, and a stateless HPACK encoder for our responses.

Two of h2's costs sit on every request of a busy server: ``open_inbound_streams`` walks every
stream on each new HEADERS frame, and ``send_headers`` runs the full HPACK encoder (table
search, indexing) on headers we generated ourselves. The session counts its own streams and
enforces MAX_CONCURRENT_STREAMS itself (answering REFUSED_STREAM, where h2 would end the whole
connection), and response header blocks are encoded without touching the dynamic table, which
makes every encoded field a pure function of (name, value) and so cacheable.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any, cast

import h2.connection
import h2.events
import h2.exceptions
from h2.connection import AllowedStreamIDs, ConnectionInputs, ConnectionState, _decode_headers
from h2.errors import ErrorCodes
from h2.exceptions import InvalidBodyLengthError
from h2.stream import StreamState
from hpack.exceptions import HPACKError, OversizedHeaderListError
from hpack.hpack import Decoder, Encoder, HuffmanEncoder, encode_integer
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.table import HeaderTable
from hyperframe.frame import (
    AltSvcFrame,
    DataFrame,
    ExtensionFrame,
    Frame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from h2stream.core.limits import (
    EMPTY,
    PING,
    PRIORITY,
    SETTINGS,
    SMALL_WINDOW_UPDATE,
    WINDOW_UPDATE,
    FloodLimits,
    LimitedFrameBuffer,
)
from h2stream.core.stats import STATS

# Frames that are flood-counted whatever they hold (issue 6, limits.py); DATA, WINDOW_UPDATE
# and RST_STREAM are judged by content below.
_FLOOD_KIND: dict[type, int] = {
    PingFrame: PING,
    SettingsFrame: SETTINGS,
    PriorityFrame: PRIORITY,
    ExtensionFrame: EMPTY,
    AltSvcFrame: EMPTY,
}

# Decoded header blocks kept per connection (see IndexedFastDecoder._decode_cached).
_BLOCK_CACHE_MAX = 64

# WINDOW_UPDATE fast path (ServerConnection.receive_window_updates): a frame is 13 bytes, its
# header announcing length 4 and type 8; windows may not pass 2^31 - 1 (RFC 9113 6.9.1).
_WU_FRAME = 13
_WU_PREFIX = b"\x00\x00\x04\x08"
# A WINDOW_UPDATE frame as (length and type, flags ignored; stream id; increment).
_WU_LAYOUT = struct.Struct(">I1xII")
_WU_PREFIX_WORD = int.from_bytes(_WU_PREFIX, "big")
_MAX_WINDOW = 2**31 - 1
# Stream states in which h2 takes a WINDOW_UPDATE without any transition or side effect.
_WU_QUIET_STATES = (StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE)
# HEADERS fast path (ServerConnection.receive_requests): type 1 with exactly END_STREAM and
# END_HEADERS (no padding, no priority): a complete request without a body in one frame.
_HEADERS = 0x1
_END_STREAM_END_HEADERS = 0x5

# Sweep h2's table of closed streams every this many finished streams (h2 does it on every
# HEADERS frame, which costs O(open streams) per request).
_SWEEP_EVERY = 256


class ServerConnection(h2.connection.H2Connection):
    """h2's connection with stream counting handed to the session, and flood accounting."""

    _finished_since_sweep = 0
    # h2 remembers how each of the last 65,536 streams closed (to tell a late frame on a stream
    # we reset from a protocol error): about 100 bytes each, 6 MiB per busy connection. Late
    # frames arrive within a round trip, so the last 1,024 streams are plenty.
    MAX_CLOSED_STREAMS = 1024
    # Flood counters (limits.py), installed by the session; None counts nothing.
    flood: FloodLimits | None = None

    def install_limits(self, flood: FloodLimits, frames: LimitedFrameBuffer) -> None:
        """Count floods and cap header blocks; call before any data is received."""
        self.flood = flood
        self.incoming_buffer = frames

    def receive_window_updates(self, data: bytes) -> list[int] | None:
        """Take ``data`` that is only whole WINDOW_UPDATE frames without h2's frame objects.

        While flow control binds, a reader sends little else (one update for the stream and
        one for the connection per half window read), and h2's general path (frame parse,
        an eager repr of each frame, two state machines, event objects) cost more than the
        sending it unblocks. Returns the ids whose send window grew (0: the connection), with
        the windows moved exactly as h2 would move them; or None, having changed nothing,
        whenever h2 must judge the bytes (anything else buffered or in the data, a closed or
        idle stream, a zero or overflowing increment): then receive_data() takes them.
        """
        size = len(data)
        if size % _WU_FRAME or not size:
            return None
        if self.state_machine.state is not ConnectionState.SERVER_OPEN:
            return None
        buffered = self.incoming_buffer
        if buffered._data or buffered._preamble or buffered._headers_buffer:
            return None
        growth: dict[int, int] = {}
        small = 0
        for prefix, stream_id, increment in _WU_LAYOUT.iter_unpack(data):
            if prefix != _WU_PREFIX_WORD:
                return None
            if not 0 < increment <= _MAX_WINDOW:
                return None  # h2 answers PROTOCOL_ERROR (hyperframe refuses 0 and the R bit)
            if increment < SMALL_WINDOW_UPDATE:
                small += 1
            stream_id &= _MAX_WINDOW
            growth[stream_id] = growth.get(stream_id, 0) + increment
        streams = self.streams
        for stream_id, increment in growth.items():
            if stream_id == 0:
                window = self.outbound_flow_control_window
            else:
                stream = streams.get(stream_id)
                if stream is None or stream.state_machine.state not in _WU_QUIET_STATES:
                    return None
                window = stream.outbound_flow_control_window
            if window + increment > _MAX_WINDOW:
                return None  # h2 answers FLOW_CONTROL_ERROR (stream or connection)
        flood = self.flood
        if small and flood is not None:
            try:
                for _ in range(small):
                    flood.hit(WINDOW_UPDATE)
            except h2.exceptions.ProtocolError as exc:
                self._terminate_connection(exc.error_code)  # as receive_data() does: GOAWAY
                raise
        for stream_id, increment in growth.items():
            if stream_id == 0:
                self.outbound_flow_control_window += increment
            else:
                streams[stream_id].outbound_flow_control_window += increment
        return list(growth)

    def receive_requests(self, data: bytes) -> list[tuple[int, list[Any]]] | None:
        """Take ``data`` that is only whole HEADERS frames, each a complete request without a
        body on a new stream (END_STREAM and END_HEADERS, no padding or priority): what h2load,
        browsers and most clients send for GETs, 100 to a read under load.

        h2's general path costs about a third of a small request's CPU here (frame objects,
        two state machines per stream with events, header processing that our configuration
        turns into copies). Returns ``(stream_id, headers)`` per frame, in order, with h2's
        state exactly as receive_data() leaves it (streams created half-closed (remote),
        decoder and connection state moved; ``tests/unit/test_headers_fast_path.py``); or
        None, having changed nothing, whenever h2 must judge the bytes. Once decoding has
        begun, an error is h2's: GOAWAY queued and the ProtocolError raised, as receive_data()
        does.
        """
        size = len(data)
        if size < 9 or data[3] != _HEADERS:
            return None
        state = self.state_machine.state
        if state is not ConnectionState.SERVER_OPEN and state is not ConnectionState.IDLE:
            return None
        buffered = self.incoming_buffer
        if buffered._data or buffered._preamble or buffered._headers_buffer:
            return None
        # The frame-size limit, and the header-block cap of LimitedFrameBuffer (issue 6).
        max_length = min(
            self.max_inbound_frame_size,
            getattr(buffered, "max_block_bytes", self.max_inbound_frame_size),
        )
        last_id = self.highest_inbound_stream_id
        frames: list[tuple[int, int, int]] = []
        pos = 0
        while pos < size:
            if size - pos < 9 or data[pos + 3] != _HEADERS:
                return None
            if data[pos + 4] != _END_STREAM_END_HEADERS:
                return None
            length = int.from_bytes(data[pos : pos + 3], "big")
            stream_id = int.from_bytes(data[pos + 5 : pos + 9], "big")
            # A new client stream: odd, above every earlier one, reserved bit clear.
            if length > max_length or stream_id <= last_id or not stream_id & 1:
                return None
            if stream_id > _MAX_WINDOW:
                return None
            end = pos + 9 + length
            if end > size:
                return None
            frames.append((stream_id, pos + 9, end))
            last_id = stream_id
            pos = end
        if state is ConnectionState.IDLE:
            self.state_machine.process_input(ConnectionInputs.RECV_HEADERS)
        decoder = self.decoder
        requests: list[tuple[int, list[Any]]] = []
        try:
            for stream_id, start, end in frames:
                headers = _decode_headers(decoder, data[start:end])
                stream = self._begin_new_stream(stream_id, AllowedStreamIDs.ODD)
                # h2's RECV_HEADERS then RECV_END_STREAM from IDLE, without the events.
                machine = stream.state_machine
                machine.client = False
                machine.headers_received = True
                machine.state = StreamState.HALF_CLOSED_REMOTE
                stream._initialize_content_length(headers)
                requests.append((stream_id, list(headers)))
        except h2.exceptions.ProtocolError as exc:
            self._terminate_connection(exc.error_code)
            raise
        return requests

    def _receive_frame(self, frame: Frame) -> list[h2.events.Event]:
        # Per frame: one dict lookup and a few identity checks; a counted frame adds an
        # increment and a compare (FloodLimits.hit). A FloodError raised here is a
        # ProtocolError to h2, which queues GOAWAY(ENHANCE_YOUR_CALM).
        flood = self.flood
        if flood is not None:
            cls = frame.__class__
            kind = _FLOOD_KIND.get(cls)
            if kind is not None:
                flood.hit(kind)
            elif cls is DataFrame:
                data = cast(DataFrame, frame)
                if not data.data and "END_STREAM" not in data.flags:
                    flood.hit(EMPTY)
            elif cls is WindowUpdateFrame:
                if cast(WindowUpdateFrame, frame).window_increment < SMALL_WINDOW_UPDATE:
                    flood.hit(WINDOW_UPDATE)
            elif cls is RstStreamFrame:
                # Only resets of streams still open count: a client answers DATA that was
                # in flight after its own cancel with RST_STREAM(STREAM_CLOSED), legitimately.
                stream = self.streams.get(frame.stream_id)
                if stream is not None and not stream.closed:
                    flood.peer_reset(self.highest_inbound_stream_id)
        try:
            return super()._receive_frame(frame)
        except InvalidBodyLengthError:
            # Only DATA raises it. RFC 9113 section 8.1.1 makes it a stream error; h2 would
            # end the whole connection.
            return self._body_length_mismatch(cast(DataFrame, frame))

    def _body_length_mismatch(self, frame: DataFrame) -> list[h2.events.Event]:
        """DATA disagreed with content-length: RST_STREAM(PROTOCOL_ERROR), connection lives.

        h2 raised after counting the frame against both windows and before delivering it, so
        the frame's connection-level credit goes back here (the stream's dies with it).
        """
        STATS.content_length_mismatch += 1
        frames: list[Frame] = []
        increment = self._inbound_flow_control_window_manager.process_bytes(
            frame.flow_controlled_length
        )
        if increment:
            update = WindowUpdateFrame(0)
            update.window_increment = increment
            frames.append(update)
        self.state_machine.process_input(ConnectionInputs.SEND_RST_STREAM)
        frames.extend(
            self._get_stream_by_id(frame.stream_id).reset_stream(ErrorCodes.PROTOCOL_ERROR)
        )
        self._prepare_for_sending(frames)
        return [
            h2.events.StreamReset(
                stream_id=frame.stream_id,
                error_code=ErrorCodes.PROTOCOL_ERROR,
                remote_reset=False,
            )
        ]

    @property
    def open_inbound_streams(self) -> int:
        # The session enforces the limit with REFUSED_STREAM; h2 would answer a connection
        # error (TooManyStreamsError) instead.
        return 0

    def stream_finished(self, stream_id: int) -> None:
        """Called as each stream leaves the session. A closed stream moves to h2's table of
        closed streams at once (what h2's own sweep would do); one whose request is still
        arriving is left for an occasional sweep."""
        stream = self.streams.get(stream_id)
        if stream is not None and stream.closed:
            del self.streams[stream_id]
            self._closed_streams[stream_id] = stream.closed_by
            return
        self._finished_since_sweep += 1
        if self._finished_since_sweep >= _SWEEP_EVERY:
            self._finished_since_sweep = 0
            self._open_streams(1)


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

    # Blocks that left the dynamic table as it was, decoded: valid until the table changes.
    # (Set per instance by _decode_cached; the class is swapped onto h2's decoder.)
    _blocks: dict[bytes, list[Any]]
    _table_mark: tuple[object, int]

    def decode(self, data: bytes, raw: bool = False) -> Any:
        try:
            # Every byte >= 0x80 is an indexed field; 0xff would start a multi-byte index.
            if raw and data and min(data) >= 0x80 and data.find(b"\xff") < 0:
                return self._decode_indexed_only(data)
            if raw:
                return self._decode_cached(data)
            return super().decode(data, raw)
        except OversizedHeaderListError:
            raise  # h2 answers it as a denial of service (ENHANCE_YOUR_CALM)
        except (HPACKError, IndexError, TypeError, UnicodeDecodeError) as exc:
            raise HeaderCompressionError(f"cannot decode header block: {exc}") from exc

    def _decode_cached(self, data: bytes) -> list[Any]:
        """Blocks that add nothing to the table (indexed fields and literals without
        indexing: what h2load and many clients repeat) decode the same while the table is
        unchanged. Any insertion puts a new entry object at the table's front, so the front
        entry's identity and the table length tell whether cached blocks still hold."""
        entries = self.header_table.dynamic_entries
        mark = (entries[0] if entries else None, len(entries))
        try:
            blocks = self._blocks
            if self._table_mark[0] is not mark[0] or self._table_mark[1] != mark[1]:
                blocks.clear()
                self._table_mark = mark
        except AttributeError:
            blocks = self._blocks = {}
            self._table_mark = mark
        cached = blocks.get(data)
        if cached is not None:
            return list(cached)
        headers = list(super().decode(data, True))
        entries = self.header_table.dynamic_entries
        if (entries[0] if entries else None) is mark[0] and len(entries) == mark[1]:
            if len(blocks) >= _BLOCK_CACHE_MAX:
                blocks.clear()
            blocks[bytes(data)] = list(headers)
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
                literal = _UNCACHED.get(header[0])
                if literal is not None:
                    parts.append(literal + _raw_string(header[1]))
                    continue
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
