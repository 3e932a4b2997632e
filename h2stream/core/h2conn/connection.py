"""h2's connection, narrowed to what the session needs and sped up where every request pays.

This is the one module (with its siblings in this package) that knows h2's internals: its
private attributes, its stream and connection state machines, its frame buffer. The session
calls the methods below and reads nothing else of h2 than its public events, settings and
window figures.

Two of h2's costs sit on every request of a busy server: ``open_inbound_streams`` walks every
stream on each new HEADERS frame, and ``receive_data`` builds frame and event objects for reads
that are only complete GETs or only WINDOW_UPDATEs. The session counts its own streams and
enforces MAX_CONCURRENT_STREAMS itself (answering REFUSED_STREAM, where h2 would end the whole
connection); the fast paths below take the common reads with h2's state moved exactly as
receive_data() would move it. The session writes its own HEADERS and DATA frames (see
``frames.py``): :meth:`ServerConnection.headers_sent`, :meth:`~ServerConnection.data_sent` and
:meth:`~ServerConnection.end_stream_sent` do h2's accounting for them, proven equal to h2's own
``send_headers``/``send_data`` by ``tests/unit/test_accounting.py``.
"""

from __future__ import annotations

import struct
from typing import Any, cast

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.connection import AllowedStreamIDs, ConnectionInputs, ConnectionState, _decode_headers
from h2.errors import ErrorCodes
from h2.exceptions import InvalidBodyLengthError
from h2.stream import H2Stream, StreamClosedBy, StreamInputs, StreamState
from hyperframe.frame import (
    AltSvcFrame,
    DataFrame,
    ExtensionFrame,
    Frame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from h2stream.config import Config
from h2stream.core.h2conn.framebuffer import LimitedFrameBuffer
from h2stream.core.h2conn.headers import IndexedFastDecoder
from h2stream.core.limits import (
    EMPTY,
    PING,
    PRIORITY,
    SETTINGS,
    SMALL_WINDOW_UPDATE,
    TINY_DATA,
    WINDOW_UPDATE,
    FloodLimits,
)
from h2stream.core.stats import STATS

# h2's stream object as the session holds it: handed back to this module's methods, never
# looked into elsewhere.
StreamHandle = H2Stream

H2_CONFIG = h2.config.H2Configuration(
    client_side=False,
    # Speed on what we generate: our own headers are already lowercase bytes.
    header_encoding=None,
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
    # Never trust the peer: inbound headers are validated, by validation.py in one pass
    # (a malformed request is then a stream error, as RFC 9113 section 8.1.1 asks).
    validate_inbound_headers=False,
    normalize_inbound_headers=False,
)

# Frames that are flood-counted whatever they hold (limits.py); DATA, WINDOW_UPDATE and
# RST_STREAM are judged by content below.
_FLOOD_KIND: dict[type, int] = {
    PingFrame: PING,
    SettingsFrame: SETTINGS,
    PriorityFrame: PRIORITY,
    ExtensionFrame: EMPTY,
    AltSvcFrame: EMPTY,
}

# WINDOW_UPDATE fast path (ServerConnection.receive_window_updates): a frame is 13 bytes, its
# header announcing length 4 and type 8; windows may not pass 2^31 - 1 (RFC 9113 6.9.1).
_WU_FRAME = 13
_WU_PREFIX = b"\x00\x00\x04\x08"
# A WINDOW_UPDATE frame as (length and type, flags ignored; stream id; increment).
_WU_LAYOUT = struct.Struct(">I1xII")
_WU_PREFIX_WORD = int.from_bytes(_WU_PREFIX, "big")
_MAX_WINDOW = 2**31 - 1
# SETTINGS_INITIAL_WINDOW_SIZE until the peer acknowledges ours (RFC 9113 6.5.2).
_DEFAULT_WINDOW = 65535
# Stream states in which h2 takes a WINDOW_UPDATE without any transition or side effect.
_WU_QUIET_STATES = (StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE)
# HEADERS fast path (ServerConnection.receive_requests): type 1 with exactly END_STREAM and
# END_HEADERS (no padding, no priority): a complete request without a body in one frame.
_HEADERS = 0x1
_END_STREAM_END_HEADERS = 0x5
# ... and a request with a small body: HEADERS with END_HEADERS alone, then one DATA frame
# (type 0) with END_STREAM alone (no padding) later in the same read.
_END_HEADERS = 0x4
_DATA = 0x0
_END_STREAM = 0x1
# A frame header: length and type in one word, flags, stream id (reserved bit included).
_FRAME_HEADER = struct.Struct(">IBI")
# What receive_requests reports, per frame (see there).
REQUEST_ENDED = 0
REQUEST_OPEN = 1
BODY_ENDED = 2
EVENTS = 3
# States in which the peer has sent END_STREAM (or the stream is gone).
_REMOTE_CLOSED = (StreamState.HALF_CLOSED_REMOTE, StreamState.CLOSED)
_HALF_CLOSED_REMOTE = StreamState.HALF_CLOSED_REMOTE
_CLOSED = StreamState.CLOSED
_BY_SEND_END_STREAM = StreamClosedBy.SEND_END_STREAM

# Sweep h2's table of closed streams every this many finished streams (h2 does it on every
# HEADERS frame, which costs O(open streams) per request).
_SWEEP_EVERY = 256


class ClosedStreams(dict[int, "StreamClosedBy | None"]):
    """How recent streams closed, which h2 reads to judge a late frame on one. h2's
    SizeLimitDict (an OrderedDict trimmed on every insert) cost two Python calls per stream,
    3% of a small request's CPU; this keeps from ``limit`` to ``2 * limit`` entries, trimmed
    to the newest ``limit`` when it passes the top, and stream_finished inserts with one
    C-level call. A re-inserted id keeps its place, as in h2's."""

    __slots__ = ("limit", "top")

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.top = 2 * limit

    def __setitem__(self, key: int, value: StreamClosedBy | None) -> None:
        # h2's own inserts (its sweep of closed streams) come here.
        dict.__setitem__(self, key, value)
        if len(self) > self.top:
            self.trim()

    def trim(self) -> None:
        newest = list(self.items())[-self.limit :]
        self.clear()
        self.update(newest)


_set_closed = dict.__setitem__


class _Slot(list[Any]):
    """One setting: its value, then values sent and not yet acknowledged. h2 keeps a deque
    per setting, about 760 bytes each: 12 of them were half of an idle connection's heap."""

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)


_KNOWN_SETTINGS = frozenset(int(code) for code in h2.settings.SettingCodes)


class CompactSettings(h2.settings.Settings):
    """h2's settings kept in small lists, and settings this server does not know ignored
    (RFC 9113 section 6.5.2), where h2 would keep each id a peer sends: a SETTINGS frame per
    unknown id could otherwise grow the table without end."""

    def __setitem__(self, key: Any, value: int) -> None:
        if key not in _KNOWN_SETTINGS:
            return
        if key not in self._settings:
            self._settings[key] = _Slot([None])  # type: ignore[assignment]
        super().__setitem__(key, value)


def compact_settings(settings: h2.settings.Settings) -> h2.settings.Settings:
    """``settings`` with the same values in CompactSettings' lists."""
    settings.__class__ = CompactSettings
    slots = {key: _Slot(values) for key, values in settings._settings.items()}
    settings._settings = slots  # type: ignore[assignment]
    return settings


class ServerStream(H2Stream):
    """h2's stream with a malformed content-length left to the request's validation (RFC
    9113 section 8.1.1: a malformed request is a stream error); h2 raises a ProtocolError that
    would end the connection."""

    def _initialize_content_length(self, headers: Any) -> None:
        try:
            super()._initialize_content_length(headers)
        except h2.exceptions.ProtocolError:
            self._expected_content_length = None


class ServerConnection(h2.connection.H2Connection):
    """h2's connection with stream counting handed to the session, flood accounting, fast
    paths for the common reads, and the accounting of frames the session writes itself."""

    _finished_since_sweep = 0
    # h2 remembers how each of the last 65,536 streams closed (to tell a late frame on a stream
    # we reset from a protocol error): about 100 bytes each, 6 MiB per busy connection. Late
    # frames arrive within a round trip, so the last 512 to 1,024 streams (ClosedStreams) are
    # plenty.
    MAX_CLOSED_STREAMS = 1024
    # Flood counters (limits.py), installed by for_config(); None counts nothing.
    flood: FloodLimits | None = None

    def __init__(self, config: h2.config.H2Configuration | None = None) -> None:
        super().__init__(config)
        self._closed: ClosedStreams = ClosedStreams(self.MAX_CLOSED_STREAMS // 2)
        self._closed_streams = self._closed
        self.remote_settings = compact_settings(self.remote_settings)
        # Our decoder from the start: nothing has been decoded yet, so nothing is lost.
        self.decoder = IndexedFastDecoder(self.DEFAULT_MAX_HEADER_LIST_SIZE)

    @classmethod
    def for_config(cls, config: Config) -> ServerConnection:
        """The server's connection: our SETTINGS (enforced from the first byte, not only once
        the peer acknowledged them), flood budgets and header-block caps."""
        conn = cls(H2_CONFIG)
        conn.install_limits(
            FloodLimits(config),
            LimitedFrameBuffer(
                config.max_header_block_size,
                config.max_header_block_frames,
                config.read_turn_units,
            ),
        )
        codes = h2.settings.SettingCodes
        # A stream window below the default is a promise the peer has not heard yet: until it
        # acknowledges our SETTINGS it may send up to 65,535 bytes a stream (RFC 9113 6.9.2),
        # so the smaller value is pending, applied to every open stream at the ACK.
        window = config.initial_window_size
        conn.local_settings = compact_settings(
            h2.settings.Settings(
                client=False,
                initial_values={
                    codes.MAX_CONCURRENT_STREAMS: config.max_concurrent_streams,
                    codes.MAX_HEADER_LIST_SIZE: config.max_header_list_size,
                    codes.INITIAL_WINDOW_SIZE: max(window, _DEFAULT_WINDOW),
                    codes.MAX_FRAME_SIZE: config.max_frame_size,
                },
            )
        )
        if window < _DEFAULT_WINDOW:
            conn.local_settings[codes.INITIAL_WINDOW_SIZE] = window
        # h2 reads these from its settings only at construction or on a change it made
        # itself: applied here so the advertised values are the enforced ones (hpack's
        # decoded-size cap included).
        conn.decoder.max_header_list_size = config.max_header_list_size
        cast(IndexedFastDecoder, conn.decoder).max_fields = config.max_header_fields
        conn.max_inbound_frame_size = config.max_frame_size
        conn.incoming_buffer.max_frame_size = config.max_frame_size
        return conn

    def initiate_connection(self) -> None:
        """Our SETTINGS frame, with the values we are moving to: h2 would announce the ones in
        force, and a pending smaller stream window would never be told (see for_config)."""
        self.state_machine.process_input(ConnectionInputs.SEND_SETTINGS)
        frame = SettingsFrame(0)
        for code, values in self.local_settings._settings.items():
            if values[-1] is not None:
                frame.settings[code] = values[-1]
        self._data_to_send += frame.serialize()

    def _local_settings_acked(self) -> dict[Any, Any]:
        """The peer acknowledged our SETTINGS: a smaller stream window now applies (h2 moves
        every stream's window by the difference). A stream the peer filled under the old
        window is left with a negative window, and the credit for bytes already consumed waits
        in h2 for more consumption that may never come: both sides would wait. That credit is
        returned here, so the stream's window is what it would have been had the smaller
        value held from the start."""
        changes = super()._local_settings_acked()
        if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE not in changes:
            return changes
        updates: list[Frame] = []
        for stream in self.streams.values():
            if stream.state_machine.state in _REMOTE_CLOSED:
                continue
            window = stream._inbound_window_manager
            increment = min(
                window._bytes_processed, window.max_window_size - window.current_window_size
            )
            if increment > 0:
                window._bytes_processed = 0
                window.current_window_size += increment
                update = WindowUpdateFrame(stream.stream_id)
                update.window_increment = increment
                updates.append(update)
        self._prepare_for_sending(updates)
        return changes

    def install_limits(self, flood: FloodLimits, frames: LimitedFrameBuffer) -> None:
        """Count floods and cap header blocks; call before any data is received."""
        self.flood = flood
        self.incoming_buffer = frames

    # -- what the session asks -----------------------------------------------------------

    def has_output(self) -> bool:
        """Whether frames are queued for the peer (data_to_send() would copy even nothing)."""
        return bool(self._data_to_send)

    def live_stream(self, stream_id: int) -> StreamHandle | None:
        """h2's stream ``stream_id`` if it exists and is not closed (a stream the peer reset
        in the same read that opened it is closed)."""
        stream = self.streams.get(stream_id)
        if stream is None or stream.state_machine.state is _CLOSED:  # h2's stream.closed
            return None
        return stream

    @staticmethod
    def stream_window(stream: StreamHandle) -> int:
        """The stream's send window (may be negative after a SETTINGS change lowered it)."""
        return stream.outbound_flow_control_window

    def data_sent(self, stream: StreamHandle, sent: int) -> None:
        """The session framed ``sent`` payload bytes of DATA on ``stream`` by itself: debit
        both windows, as send_data() would."""
        stream.outbound_flow_control_window -= sent
        self.outbound_flow_control_window -= sent

    def headers_sent(self, stream: StreamHandle, end_stream: bool) -> None:
        """The session sends a HEADERS frame on ``stream`` by itself (its own HPACK block):
        the state transitions of send_headers(). Raises h2's ProtocolError if the stream can
        no longer send (reset by the peer)."""
        machine = stream.state_machine
        if (
            machine.state is _HALF_CLOSED_REMOTE
            and machine.client is False
            and not machine.headers_sent
            and self.state_machine.state is ConnectionState.SERVER_OPEN
        ):
            # The usual response to a whole request, as h2's tables move it (response_sent,
            # then send_end_stream; the connection stays SERVER_OPEN), without the lookups
            # (tests/unit/test_response_transitions.py).
            machine.headers_sent = True
            if end_stream:
                machine.state = _CLOSED
                machine.stream_closed_by = _BY_SEND_END_STREAM
            return
        machine.process_input(StreamInputs.SEND_HEADERS)
        self.state_machine.process_input(ConnectionInputs.SEND_HEADERS)
        if end_stream:
            machine.process_input(StreamInputs.SEND_END_STREAM)

    @staticmethod
    def end_stream_sent(stream: StreamHandle) -> None:
        """The session's last DATA frame carried END_STREAM: the transitions of send_data()
        with ``end_stream=True``."""
        machine = stream.state_machine
        if machine.state is _HALF_CLOSED_REMOTE:
            # SEND_DATA leaves it as it is; SEND_END_STREAM closes it (send_end_stream).
            machine.state = _CLOSED
            machine.stream_closed_by = _BY_SEND_END_STREAM
            return
        machine.process_input(StreamInputs.SEND_DATA)
        machine.process_input(StreamInputs.SEND_END_STREAM)

    def receive_window(self, stream: StreamHandle) -> int:
        """What the peer may still send on ``stream`` before the server returns credit: the
        smaller of the stream's and the connection's receive windows."""
        return min(
            stream._inbound_window_manager.current_window_size,
            self._inbound_flow_control_window_manager.current_window_size,
        )

    @staticmethod
    def remote_closed(stream: StreamHandle) -> bool:
        """Whether the peer can send nothing more on ``stream`` (h2 has seen its END_STREAM,
        or the stream is closed), even while the events of the read that brought the
        END_STREAM are still being dispatched."""
        return stream.state_machine.state in _REMOTE_CLOSED

    def input_pending(self) -> bool:
        """Whether the last receive stopped on its turn's budget with whole frames still
        buffered: the I/O layer gives them another turn (``receive(b"")``) before reading."""
        frames = self.incoming_buffer
        return isinstance(frames, LimitedFrameBuffer) and frames.turn_over

    def header_block_pending(self) -> bool:
        """Whether the peer is part-way through a header block (for the header timeout)."""
        frames = self.incoming_buffer
        return isinstance(frames, LimitedFrameBuffer) and frames.header_block_pending()

    # -- fast paths ----------------------------------------------------------------------

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

    def receive_requests(self, data: bytes) -> list[tuple[int, int, Any]] | None:
        """Take ``data`` that is only whole new requests: HEADERS frames of new streams with
        END_HEADERS (no padding or priority), and for those without END_STREAM at most one
        DATA frame each, with END_STREAM and no padding, anywhere after them in the read.
        That is what h2load, browsers, gRPC clients and most others send for GETs and small
        POSTs (a unary gRPC call), many to a read under load.

        h2's general path costs about a third of a small request's CPU here (frame objects,
        two state machines per stream with events, header processing that our configuration
        turns into copies). Returns, in frame order, what h2's events would say:
        ``(REQUEST_ENDED, stream_id, headers)`` (a request without a body),
        ``(REQUEST_OPEN, stream_id, headers)`` (its body follows), ``(BODY_ENDED, stream_id,
        body)`` (its whole body, END_STREAM), or rarely ``(EVENTS, stream_id, events)``: h2's
        events for a DATA frame it must judge (the body disagrees with content-length). h2's
        state is exactly as receive_data() leaves it (streams created, windows debited,
        decoder and connection state moved; ``tests/unit/test_headers_fast_path.py``); or
        None, having changed nothing, whenever h2 must judge the bytes. Once decoding has
        begun, an error is h2's: GOAWAY queued and the ProtocolError raised, as
        receive_data() does.
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
        # The frame-size limit, and the header-block cap of LimitedFrameBuffer.
        max_frame = self.max_inbound_frame_size
        max_length = min(max_frame, getattr(buffered, "max_block_bytes", max_frame))
        last_id = self.highest_inbound_stream_id
        # (kind, stream id, payload start, payload end), in frame order.
        frames: list[tuple[int, int, int, int]] = []
        # Streams opened in this read whose body has not ended.
        open_ids: set[int] = set()
        # The read's work, priced as LimitedFrameBuffer prices it: over one turn's budget, the
        # general path takes it and leaves the rest for the next turn.
        units = getattr(buffered, "turn_units", 0) or 1 << 62
        # Bodies must fit the windows they arrive in (h2 would answer FLOW_CONTROL_ERROR).
        stream_window = self.local_settings.initial_window_size
        conn_window = self._inbound_flow_control_window_manager.current_window_size
        unpack = _FRAME_HEADER.unpack_from
        pos = 0
        while pos < size:
            if size - pos < 9:
                return None
            word, flags, stream_id = unpack(data, pos)
            kind = word & 0xFF
            length = word >> 8
            end = pos + 9 + length
            if end > size:
                return None
            if kind == _HEADERS:
                if flags == _END_STREAM_END_HEADERS:
                    what = REQUEST_ENDED
                elif flags == _END_HEADERS:
                    what = REQUEST_OPEN
                    open_ids.add(stream_id)
                else:
                    return None
                # A new client stream: odd, above every earlier one, reserved bit clear; an
                # empty block is h2's (the flood budget counts it).
                if not 0 < length <= max_length or stream_id <= last_id or not stream_id & 1:
                    return None
                if stream_id > _MAX_WINDOW:
                    return None
                units -= 1 + (length >> 6)
                last_id = stream_id
            elif kind == _DATA and flags == _END_STREAM and stream_id in open_ids:
                # The whole body of a request opened in this read.
                open_ids.discard(stream_id)
                conn_window -= length
                units -= 1
                if length > max_frame or length > stream_window or conn_window < 0:
                    return None
                what = BODY_ENDED
            else:
                return None
            if units < 0:
                return None
            frames.append((what, stream_id, pos + 9, end))
            pos = end
        if state is ConnectionState.IDLE:
            self.state_machine.process_input(ConnectionInputs.RECV_HEADERS)
        decoder = self.decoder
        out: list[tuple[int, int, Any]] = []
        opened = 0
        # What h2's _begin_new_stream gives each stream, read once for the read (no SETTINGS
        # frame is among its frames); its checks (a new odd id above every earlier one) were
        # made on each frame above, and its three debug calls log nothing here.
        h2_config = self.config
        inbound = self.local_settings.initial_window_size
        outbound = self.remote_settings.initial_window_size
        max_frame_out = self.max_outbound_frame_size
        conn_manager = self._inbound_flow_control_window_manager
        streams = self.streams
        half_closed = StreamState.HALF_CLOSED_REMOTE
        try:
            for what, stream_id, start, end in frames:
                if what == BODY_ENDED:
                    body = data[start:end]
                    stream = streams[stream_id]
                    expected = stream._expected_content_length
                    if expected is not None and expected != stream._actual_content_length + len(
                        body
                    ):
                        # A stream error that h2 and _body_length_mismatch judge: their events.
                        frame = DataFrame(stream_id, body)
                        frame.flags.add("END_STREAM")
                        out.append((EVENTS, stream_id, self._receive_frame(frame)))
                        continue
                    # h2's RECV_DATA (the windows and the length) and RECV_END_STREAM.
                    conn_manager.current_window_size -= len(body)
                    stream._inbound_window_manager.current_window_size -= len(body)
                    stream._actual_content_length += len(body)
                    stream.state_machine.state = half_closed
                    out.append((BODY_ENDED, stream_id, body))
                    continue
                headers = _decode_headers(decoder, data[start:end])
                stream = ServerStream(stream_id, h2_config, inbound, outbound)
                stream.max_outbound_frame_size = max_frame_out
                streams[stream_id] = stream
                self.highest_inbound_stream_id = stream_id
                opened += 1
                # h2's RECV_HEADERS (then RECV_END_STREAM) from IDLE, without the events.
                machine = stream.state_machine
                machine.client = False
                machine.headers_received = True
                machine.state = half_closed if what == REQUEST_ENDED else StreamState.OPEN
                # A malformed content-length is left to the request's validation
                # (ServerStream's override). Without the field it would change nothing (a
                # server stream's request_method stays None, so HEAD is no case here).
                for name, _ in headers:
                    if name == b"content-length":
                        stream._initialize_content_length(headers)
                        break
                out.append((what, stream_id, headers))
        except h2.exceptions.ProtocolError as exc:
            self._terminate_connection(exc.error_code)
            raise
        finally:
            if self.flood is not None:
                self.flood.opened += opened
        return out

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
                # Empty and tiny frames (too small for even a gRPC message prefix) carry
                # next to nothing for a whole frame's work.
                if len(data.data) < TINY_DATA and "END_STREAM" not in data.flags:
                    flood.hit(EMPTY)
            elif cls is WindowUpdateFrame:
                if cast(WindowUpdateFrame, frame).window_increment < SMALL_WINDOW_UPDATE:
                    flood.hit(WINDOW_UPDATE)
                elif frame.stream_id and not self._stream_open(frame.stream_id):
                    # For a stream that is gone: work for nothing, but DATA that was in
                    # flight may draw it (budgeted with the credit for DATA we send).
                    flood.hit(WINDOW_UPDATE)
            elif cls is RstStreamFrame:
                # Only resets of streams still open count as resets: a client answers DATA
                # that was in flight after its own cancel with RST_STREAM(STREAM_CLOSED),
                # legitimately. Those cost what an update for a closed stream costs.
                if self._stream_open(frame.stream_id):
                    flood.peer_reset()
                else:
                    flood.hit(WINDOW_UPDATE)
            elif cls is HeadersFrame and not cast(HeadersFrame, frame).data:
                flood.hit(EMPTY)  # an empty header block: no request, only work
        if frame.__class__ is DataFrame and not self._stream_open(frame.stream_id):
            # DATA for a stream already gone (reset, or answered while its body was still on
            # the way): received all the same, though h2 delivers no event for it.
            STATS.request_body_bytes += len(frame.data)
        try:
            return super()._receive_frame(frame)
        except InvalidBodyLengthError:
            # Only DATA raises it. RFC 9113 section 8.1.1 makes it a stream error; h2 would
            # end the whole connection.
            return self._body_length_mismatch(cast(DataFrame, frame))

    def _stream_open(self, stream_id: int) -> bool:
        stream = self.streams.get(stream_id)
        return stream is not None and not stream.closed

    def _begin_new_stream(self, stream_id: int, allowed_ids: AllowedStreamIDs) -> H2Stream:
        stream = super()._begin_new_stream(stream_id, allowed_ids)
        # A malformed content-length is the stream's problem (validation.py resets it),
        # not the connection's, as h2 would make it.
        stream.__class__ = ServerStream
        flood = self.flood
        if flood is not None:
            flood.opened += 1  # the rapid-reset budget counts requests, not stream ids
        return stream

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

    def release_buffers(self) -> None:
        """The connection is gone: drop the input, header block and output it still holds.
        h2's connection object is a reference cycle (its frame dispatch table holds bound
        methods), freed only when the garbage collector next runs, which --gc-threshold
        makes rarer: a flood's partial header block must not wait for it."""
        buffered = self.incoming_buffer
        buffered._data = bytearray()
        buffered._headers_buffer = []
        self.clear_outbound_data_buffer()
        decoder = self.decoder
        if isinstance(decoder, IndexedFastDecoder):
            decoder.forget_blocks()

    def stream_finished(self, stream_id: int) -> None:
        """Called as each stream leaves the session. A closed stream moves to h2's table of
        closed streams at once (what h2's own sweep would do); one whose request is still
        arriving is left for an occasional sweep."""
        stream = self.streams.get(stream_id)
        if stream is not None and stream.state_machine.state is _CLOSED:  # h2's stream.closed
            del self.streams[stream_id]
            closed = self._closed
            _set_closed(closed, stream_id, stream.state_machine.stream_closed_by)
            if len(closed) > closed.top:
                closed.trim()
            return
        self._finished_since_sweep += 1
        if self._finished_since_sweep >= _SWEEP_EVERY:
            self._finished_since_sweep = 0
            self._open_streams(1)
