"""The session's own DATA framing and window accounting equal what ``h2.send_data()`` produces.

``Session.pump`` writes DATA frame headers itself and debits h2's windows by hand, so nothing in
h2 checks it. Here one client's bytes drive three servers side by side, with no sockets:

* the Session under test, writing into a recording sink;
* reference A, a plain h2 server connection that re-sends every DATA frame the session wrote
  (same payload, same END_STREAM flag) through ``send_data()``: its serialised frame must equal
  the session's byte for byte, and h2 itself rejects a frame beyond the windows or the peer's
  frame size;
* reference B, a plain h2 server connection that sends the same body greedily through
  ``send_data()``, chunked by min(stream window, connection window, max frame): the payload
  stream and the windows after every step must match the session's, whatever frame
  boundaries the session's turn quanta chose.

The client's h2 connection is a fourth referee: it raises on any frame beyond the credit it
granted, and must see the body end exactly once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from hyperframe.frame import DataFrame, HeadersFrame, RstStreamFrame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.frames import split_frames
from support.recording import Closer, RecordingSink

from h2stream.body.bodies import FileBody
from h2stream.config import Config
from h2stream.core.framing import BytesBody
from h2stream.core.session import Session, StreamState

MAX_WINDOW = 2**31 - 1
DEFAULT_WINDOW = 65535
SC = h2.settings.SettingCodes
BLOB_SIZE = (1 << 20) + 70_000
PATH = b"/blob"

REFERENCE_CONFIG = h2.config.H2Configuration(
    client_side=False, header_encoding=None, validate_inbound_headers=True
)


@dataclass(frozen=True)
class Blob:
    """The random file bodies are cut from (its bytes kept out of hypothesis' reports)."""

    path: Path
    data: bytes = field(repr=False)


@dataclass
class Scenario:
    kind: str  # "file-sendfile", "file-auto", "file-copy" or "bytes"
    offset: int
    length: int
    blob: Blob
    closers: list[Closer] = field(default_factory=list)
    # The session's h2 stream for the request, kept to compare its state after it closes.
    h2_stream: Any = None

    @property
    def body(self) -> bytes:
        return self.blob.data[self.offset : self.offset + self.length]

    def handler(self, stream: StreamState) -> None:
        self.h2_stream = stream.h2_stream
        fields = [(b"content-length", b"%d" % self.length)]
        if self.length == 0:
            stream.respond(200, fields, None)
        elif self.kind == "bytes":
            stream.respond(200, fields, BytesBody(self.body))
        else:
            fd = os.open(self.blob.path, os.O_RDONLY)
            closer = Closer(fd)
            self.closers.append(closer)
            stream.respond(200, fields, FileBody(fd, self.offset, self.length, closer))


class Harness:
    """One client, the session, and the two references, stepped together."""

    def __init__(
        self,
        scenario: Scenario,
        config: Config,
        client_settings: dict[int, int],
        pause_every: int | None,
    ) -> None:
        self.scenario = scenario
        self.config = config
        self.sink = RecordingSink(scenario.kind in ("file-sendfile", "file-auto"), pause_every)
        self.closed_called = 0
        self.session = Session(config, self.sink, scenario.handler, self._on_close)

        self.client = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.client.local_settings = h2.settings.Settings(
            client=True, initial_values=client_settings
        )
        self.max_frame = client_settings[SC.MAX_FRAME_SIZE]
        # Settings given as initial values count as already acknowledged, so h2 never moves
        # its inbound frame-size limit off the default: do it here, as an ACK would.
        self.client.max_inbound_frame_size = self.max_frame
        self.client.incoming_buffer.max_frame_size = self.max_frame
        self.initial_window = client_settings[SC.INITIAL_WINDOW_SIZE]

        self.ref_a = self._reference()
        self.ref_b = self._reference()
        self.ref_b_sent = bytearray()
        self.ref_b_ended = False
        self.ref_b_open = False

        self.sid = 0
        # What the client decoded.
        self.received = bytearray()
        self.ended = 0
        # The client's own model of the credit it granted, checked on every DATA frame.
        self.model_stream = 0
        self.model_conn = DEFAULT_WINDOW

    def _reference(self) -> h2.connection.H2Connection:
        ref = h2.connection.H2Connection(REFERENCE_CONFIG)
        ref.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                SC.MAX_CONCURRENT_STREAMS: self.config.max_concurrent_streams,
                SC.INITIAL_WINDOW_SIZE: self.config.initial_window_size,
                SC.MAX_FRAME_SIZE: self.config.max_frame_size,
            },
        )
        ref.initiate_connection()
        ref.data_to_send()
        return ref

    def _on_close(self) -> None:
        self.closed_called += 1

    # -- driving -----------------------------------------------------------------------

    def start(self) -> None:
        self.session.start()
        self.client.initiate_connection()
        self.deliver(self.client.data_to_send())

    def deliver(self, client_bytes: bytes) -> None:
        """Client bytes to all three servers; then everything the session wrote to the client.

        Repeats while the client has answers (SETTINGS ACK) to send back.
        """
        while client_bytes:
            more = self.session.receive(client_bytes)
            self._drain(more)
            for event in self.ref_a.receive_data(client_bytes):
                if isinstance(event, h2.events.RequestReceived):
                    assert event.stream_id == self.sid
            for event in self.ref_b.receive_data(client_bytes):
                if isinstance(event, h2.events.RequestReceived):
                    self.ref_b.send_headers(
                        self.sid, [(b":status", b"200")], end_stream=self.scenario.length == 0
                    )
                    self.ref_b_open = self.scenario.length > 0
                    self.ref_b_ended = self.scenario.length == 0
            self._ref_b_send()
            self._to_client(self.sink.take())
            self.check_windows()
            client_bytes = self.client.data_to_send()

    def _drain(self, more: bool) -> None:
        """What the I/O layer does: pump again while a turn is due or after a pause ends."""
        for _ in range(10_000):
            if not self.sink.writable:
                self.sink.writable = True  # resume_writing
                more = self.session.pump()
            elif more:
                more = self.session.pump()
            else:
                return
        raise AssertionError("the scheduler never settled")

    def _ref_b_send(self) -> None:
        """Reference B: send_data() chunked by min(stream window, conn window, max frame)."""
        ref = self.ref_b
        body = self.scenario.body
        while self.ref_b_open:
            left = len(body) - len(self.ref_b_sent)
            n = min(ref.local_flow_control_window(self.sid), ref.max_outbound_frame_size, left)
            if n <= 0:
                return
            start = len(self.ref_b_sent)
            last = n == left
            ref.send_data(self.sid, body[start : start + n], end_stream=last)
            self.ref_b_sent += body[start : start + n]
            if last:
                self.ref_b_open = False
                self.ref_b_ended = True
        ref.data_to_send()

    def _to_client(self, data: bytes) -> None:
        ref_a = self.ref_a
        for frame, raw in split_frames(data):
            if isinstance(frame, HeadersFrame) and frame.stream_id == self.sid:
                ref_a.send_headers(
                    self.sid, [(b":status", b"200")], end_stream="END_STREAM" in frame.flags
                )
            elif isinstance(frame, DataFrame):
                assert frame.stream_id == self.sid
                n = len(frame.data)
                # (d) never beyond the peer's frame size or our own cap...
                assert n <= self.max_frame and n <= self.config.max_send_frame_size
                # ...nor beyond the credit the client granted.
                self.model_stream -= n
                self.model_conn -= n
                assert self.model_stream >= 0 and self.model_conn >= 0, "window overrun"
                # (a) h2's own serialisation of the same frame is the same bytes.
                ref_a.data_to_send()
                ref_a.send_data(self.sid, frame.data, end_stream="END_STREAM" in frame.flags)
                assert ref_a.data_to_send() == raw
            elif isinstance(frame, RstStreamFrame):
                raise AssertionError(f"unexpected RST_STREAM code {frame.error_code}")
            # (c) the client's h2 accepts every frame; a ProtocolError fails the test here.
            for event in self.client.receive_data(raw):
                if isinstance(event, h2.events.DataReceived):
                    self.received += event.data
                elif isinstance(event, h2.events.StreamEnded):
                    self.ended += 1
                elif isinstance(event, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                    raise AssertionError(f"unexpected {event}")

    # -- client actions ------------------------------------------------------------------

    def request(self) -> None:
        self.sid = self.client.get_next_available_stream_id()
        self.model_stream = self.initial_window
        headers = [
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":authority", b"localhost"),
            (b":path", PATH),
        ]
        self.client.send_headers(self.sid, headers, end_stream=True)
        self.deliver(self.client.data_to_send())

    @property
    def stream_open(self) -> bool:
        return self.ended == 0

    def server_windows(self) -> tuple[int, int]:
        conn = self.session.conn.outbound_flow_control_window
        stream = self.scenario.h2_stream
        return conn, stream.outbound_flow_control_window if stream is not None else 0

    def open_stream(self, increment: int) -> None:
        _, stream = self.server_windows()
        increment = min(increment, MAX_WINDOW - stream)
        if increment <= 0 or not self.stream_open:
            return
        self.model_stream += increment
        self.client.increment_flow_control_window(increment, stream_id=self.sid)
        self.deliver(self.client.data_to_send())

    def open_conn(self, increment: int) -> None:
        conn, _ = self.server_windows()
        increment = min(increment, MAX_WINDOW - conn)
        if increment <= 0:
            return
        self.model_conn += increment
        self.client.increment_flow_control_window(increment)
        self.deliver(self.client.data_to_send())

    def change_initial_window(self, value: int) -> None:
        if not self.stream_open:
            # The body is complete: a later SETTINGS change moves no window of ours (the
            # session drops closed streams from h2's table at once; a plain h2 keeps them and
            # would apply the delta to a closed stream's stale window).
            return
        _, stream = self.server_windows()
        # The open stream's window moves by the delta and must stay <= 2**31-1 (RFC 9113 6.9.2).
        value = min(value, self.initial_window + MAX_WINDOW - stream)
        if value == self.initial_window:
            return
        if self.stream_open:
            self.model_stream += value - self.initial_window
        self.initial_window = value
        self.client.update_settings({SC.INITIAL_WINDOW_SIZE: value})
        self.deliver(self.client.data_to_send())

    def finish(self) -> None:
        """Grant whatever is left, so every example ends with the whole body."""
        left = len(self.scenario.body) - len(self.received)
        if not self.stream_open:
            return
        conn, stream = self.server_windows()
        if conn < left:
            self.open_conn(left - conn)
        if stream < left:
            self.open_stream(left - stream)

    # -- checks --------------------------------------------------------------------------

    def check_windows(self) -> None:
        """(b) After every step the session's windows are the references' windows."""
        if not self.sid:
            return
        session_conn = self.session.conn.outbound_flow_control_window
        assert session_conn == self.ref_a.outbound_flow_control_window
        assert session_conn == self.ref_b.outbound_flow_control_window
        assert bytes(self.received) == bytes(self.ref_b_sent), "payload differs from send_data()"
        assert (self.ended == 1) == self.ref_b_ended
        ref_a_stream = self.ref_a.streams.get(self.sid)
        ours = self.scenario.h2_stream
        if ours is None or ref_a_stream is None:
            return
        assert ours.state_machine.state == ref_a_stream.state_machine.state
        assert ours.state_machine.state == self.ref_b.streams[self.sid].state_machine.state
        if not ours.closed:
            stream_window = ours.outbound_flow_control_window
            assert stream_window == ref_a_stream.outbound_flow_control_window
            assert stream_window == self.ref_b.streams[self.sid].outbound_flow_control_window
            assert min(session_conn, stream_window) == self.ref_b.local_flow_control_window(
                self.sid
            )


@pytest.fixture(scope="module")
def blob(tmp_path_factory: pytest.TempPathFactory) -> Blob:
    path = tmp_path_factory.mktemp("accounting") / "blob.bin"
    data = os.urandom(BLOB_SIZE)
    path.write_bytes(data)
    return Blob(path, data)


windows = st.one_of(
    st.sampled_from([0, 1, 16383, 16384, 65535, 65536, MAX_WINDOW]),
    st.integers(0, 200_000),
)
frame_sizes = st.one_of(
    st.sampled_from([16384, 16385, 65536, 2**24 - 1]), st.integers(16384, 1 << 20)
)
lengths = st.one_of(
    st.sampled_from([0, 1, 16383, 16384, 16385, 65535, 65536, 1 << 20]),
    st.integers(0, 200_000),
    st.integers(0, 1 << 20),
)
increments = st.one_of(st.sampled_from([1, 16384, 65535]), st.integers(1, 300_000))
actions = st.one_of(
    st.tuples(st.just("stream"), increments),
    st.tuples(st.just("conn"), increments),
    st.tuples(st.just("both"), increments),
    st.tuples(st.just("settings"), windows),
)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    kind=st.sampled_from(["file-sendfile", "file-auto", "file-copy", "bytes"]),
    offset=st.integers(0, 69_999),
    length=lengths,
    initial_window=windows,
    max_frame=frame_sizes,
    turn=st.sampled_from([1000, 16384, 65536, 100_000]),
    quantum=st.sampled_from([16384, 1 << 18, 4 << 20]),
    max_send_frame=st.sampled_from([16384, 1 << 18]),
    pause_every=st.one_of(st.none(), st.integers(1, 7)),
    steps=st.lists(actions, max_size=10),
)
def test_session_framing_equals_send_data(
    blob: Blob,
    kind: str,
    offset: int,
    length: int,
    initial_window: int,
    max_frame: int,
    turn: int,
    quantum: int,
    max_send_frame: int,
    pause_every: int | None,
    steps: list[tuple[str, int]],
) -> None:
    scenario = Scenario(kind, offset, min(length, BLOB_SIZE - offset), blob)
    config = Config(
        stream_turn_bytes=turn,
        write_quantum=quantum,
        max_send_frame_size=max_send_frame,
        # "file-sendfile": zero-copy whatever the frame size; "file-auto": the default policy
        # (batched copy for long runs of small frames) on a zero-copy sink.
        zero_copy_min_frame=0 if kind == "file-sendfile" else Config().zero_copy_min_frame,
    )
    harness = Harness(
        scenario,
        config,
        {SC.INITIAL_WINDOW_SIZE: initial_window, SC.MAX_FRAME_SIZE: max_frame},
        pause_every,
    )
    harness.start()
    harness.request()
    for action, value in steps:
        if action in ("stream", "both"):
            harness.open_stream(value)
        if action in ("conn", "both"):
            harness.open_conn(value)
        if action == "settings":
            harness.change_initial_window(value)
    harness.finish()

    assert bytes(harness.received) == scenario.body
    assert harness.ended == 1, "StreamEnded must be seen exactly once"
    assert harness.session.streams == {}
    assert all(closer.closed for closer in scenario.closers), "the body's fd was left open"
    assert harness.closed_called == 0
    if kind == "file-sendfile" and scenario.length > max(1, min(max_frame, max_send_frame)):
        # Everything but the last frame may go zero-copy; the last carries END_STREAM by copy.
        assert harness.sink.sendfile_frames > 0


@pytest.mark.parametrize("kind", ["file-sendfile", "file-copy", "bytes"])
def test_default_windows_exact_65535(blob: Blob, kind: str) -> None:
    """The plain case spelled out: default windows, a 1 MiB body, two updates."""
    scenario = Scenario(kind, 0, 1 << 20, blob)
    harness = Harness(
        scenario, Config(), {SC.INITIAL_WINDOW_SIZE: 65535, SC.MAX_FRAME_SIZE: 16384}, None
    )
    harness.start()
    harness.request()
    assert len(harness.received) == DEFAULT_WINDOW
    harness.open_stream(1000)
    assert len(harness.received) == DEFAULT_WINDOW  # connection window still zero
    harness.open_conn(1000)
    assert len(harness.received) == DEFAULT_WINDOW + 1000
    harness.finish()
    assert bytes(harness.received) == scenario.body
    assert harness.ended == 1
