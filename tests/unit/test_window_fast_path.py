"""``ServerConnection.receive_window_updates`` moves windows exactly as h2's receive_data() does.

Two server connections get the same client bytes: one through the fast path (falling back to
receive_data() when it declines, as the session does), one through plain receive_data(). After
every batch their windows, stream states and queued output must be equal, and when the fast
path took a batch, the ids it reports must be the ids h2 reported WindowUpdated for.
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from hypothesis import given, settings
from hypothesis import strategies as st
from support.frames import window_update

from h2stream.config import Config
from h2stream.core.h2conn import LimitedFrameBuffer, ServerConnection
from h2stream.core.limits import FloodLimits

MAX_WINDOW = 2**31 - 1
SERVER_CONFIG = h2.config.H2Configuration(client_side=False, header_encoding=None)
REQUEST = [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/")]


class Pair:
    """A client, the fast-path server and the reference server, with streams 1 (open, its
    response started), 3 (closed: request and response complete) and 5 (request still open)."""

    def __init__(self) -> None:
        self.client = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.fast = ServerConnection(config=SERVER_CONFIG)
        self.fast.install_limits(FloodLimits(Config()), LimitedFrameBuffer(65536, 16))
        self.ref = h2.connection.H2Connection(SERVER_CONFIG)
        for server in (self.fast, self.ref):
            server.initiate_connection()
        self.client.initiate_connection()
        self.both(self.client.data_to_send())
        self._from_servers()
        self.client.send_headers(1, REQUEST, end_stream=True)
        self.client.send_headers(3, REQUEST, end_stream=True)
        self.client.send_headers(5, REQUEST, end_stream=False)
        self.both(self.client.data_to_send())
        for server in (self.fast, self.ref):
            server.send_headers(1, [(":status", "200")])
            server.send_headers(3, [(":status", "204")], end_stream=True)
        self._from_servers()

    def _from_servers(self) -> None:
        out = self.fast.data_to_send()
        assert out == self.ref.data_to_send()
        self.client.receive_data(out)
        self.both(self.client.data_to_send())

    def both(self, data: bytes) -> tuple[list[int] | None, str, str]:
        """Feed ``data`` to both servers; return the fast path's answer and each outcome."""
        if not data:
            return None, "", ""
        taken = None
        try:
            taken = self.fast.receive_window_updates(data)
            fast = "" if taken is not None else _ids(self.fast.receive_data(data))
        except h2.exceptions.ProtocolError as exc:
            fast = f"error {exc.error_code}"
        try:
            ref = _ids(self.ref.receive_data(data))
        except h2.exceptions.ProtocolError as exc:
            ref = f"error {exc.error_code}"
        if taken is not None:
            fast = _ids_of(taken)
        return taken, fast, ref

    def assert_same(self) -> None:
        assert self.fast.state_machine.state == self.ref.state_machine.state
        assert self.fast.outbound_flow_control_window == self.ref.outbound_flow_control_window
        for stream_id in (1, 3, 5):
            ours, theirs = self.fast.streams.get(stream_id), self.ref.streams.get(stream_id)
            assert (ours is None) == (theirs is None)
            if ours is not None and theirs is not None:
                assert ours.state_machine.state == theirs.state_machine.state
                assert ours.outbound_flow_control_window == theirs.outbound_flow_control_window
        assert self.fast.data_to_send() == self.ref.data_to_send()


def _ids(events: list[h2.events.Event]) -> str:
    grown = [e.stream_id for e in events if isinstance(e, h2.events.WindowUpdated)]
    other = sorted(type(e).__name__ for e in events if not isinstance(e, h2.events.WindowUpdated))
    return _ids_of(grown) + (" " + ",".join(other) if other else "")


def _ids_of(stream_ids: list[int]) -> str:
    return ",".join(str(i) for i in sorted(set(stream_ids)))


def test_the_common_batch_takes_the_fast_path() -> None:
    pair = Pair()
    taken, fast, ref = pair.both(window_update(1, 32768) + window_update(0, 32768))
    assert taken == [1, 0]
    assert fast == ref == "0,1"
    pair.assert_same()


def test_closed_idle_and_overflowing_streams_go_to_h2() -> None:
    pair = Pair()
    for data in (
        window_update(3, 100),  # closed: h2 ignores it (StreamClosedError)
        window_update(7, 100),  # idle: h2 calls it a protocol error
    ):
        taken, fast, ref = pair.both(data)
        assert taken is None
        assert fast == ref
    pair = Pair()
    taken, fast, ref = pair.both(window_update(1, MAX_WINDOW))  # stream FLOW_CONTROL_ERROR
    assert taken is None and fast == ref
    pair.assert_same()
    pair = Pair()
    taken, fast, ref = pair.both(window_update(0, 0))  # zero increment: PROTOCOL_ERROR
    assert taken is None and fast == ref == f"error {h2.errors.ErrorCodes.PROTOCOL_ERROR}"
    pair.assert_same()


def test_a_partial_frame_is_left_to_h2() -> None:
    pair = Pair()
    data = window_update(1, 1000) + window_update(0, 1000)
    assert pair.fast.receive_window_updates(data[:20]) is None
    pair.assert_same()
    for piece in (data[:20], data[20:]):
        taken, fast, ref = pair.both(piece)
        assert taken is None and fast == ref
    pair.assert_same()


frames = st.lists(
    st.tuples(
        st.sampled_from([0, 1, 3, 5, 7]),
        st.one_of(
            st.sampled_from([0, 1, 1023, 1024, 32768, MAX_WINDOW, 2**31, 2**32 - 1]),
            st.integers(1, 1 << 20),
        ),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(batches=st.lists(frames, min_size=1, max_size=6))
def test_windows_equal_h2s_for_any_batches(batches: list[list[tuple[int, int]]]) -> None:
    pair = Pair()
    for batch in batches:
        data = b"".join(window_update(sid, inc) for sid, inc in batch)
        _, fast, ref = pair.both(data)
        assert fast == ref
        pair.assert_same()
        if fast.startswith("error"):
            return


def test_a_window_may_reach_exactly_2_31_minus_1_and_not_one_more() -> None:
    for stream_id in (0, 1):
        pair = Pair()
        window = (
            pair.fast.outbound_flow_control_window
            if stream_id == 0
            else pair.fast.streams[stream_id].outbound_flow_control_window
        )
        taken, fast, ref = pair.both(window_update(stream_id, MAX_WINDOW - window))
        assert taken == [stream_id] and fast == ref
        pair.assert_same()
        taken, fast, ref = pair.both(window_update(stream_id, 1))
        assert taken is None and fast == ref  # FLOW_CONTROL_ERROR: RST_STREAM or GOAWAY
        pair.assert_same()
