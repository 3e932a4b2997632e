"""``ServerConnection.receive_requests`` leaves h2's state exactly as receive_data() does.

A client's bytes go to two server connections configured as the session configures h2: one
through the fast path (falling back to receive_data() when it declines, as the session does),
one through plain receive_data(). After every read the requests each reported must be the
same, and so must the connection state, every stream's state machine, windows and expected
content length, the HPACK decoder's dynamic table and the bytes queued for the peer; an error
must be the same error with the same GOAWAY.
"""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from hypothesis import given, settings
from hypothesis import strategies as st

from h2stream.config import Config
from h2stream.core.h2conn import H2_CONFIG, LimitedFrameBuffer, ServerConnection
from h2stream.core.h2conn.connection import (
    BODY_ENDED,
    EVENTS,
    REQUEST_ENDED,
    REQUEST_OPEN,
    ServerStream,
)
from h2stream.core.limits import FloodLimits

CLIENT_CONFIG = h2.config.H2Configuration(client_side=True, header_encoding=None)


class Reference(h2.connection.H2Connection):
    """h2 itself, with the two deviations the server makes on every path: a malformed
    content-length is left to the request's validation, and a body that disagrees with it
    resets the stream (stream errors, RFC 9113 8.1.1), where h2 would end the connection."""

    def _begin_new_stream(self, stream_id: int, allowed_ids: Any) -> Any:
        stream = super()._begin_new_stream(stream_id, allowed_ids)
        stream.__class__ = ServerStream
        return stream

    # The session counts streams itself (ServerConnection's own), so h2 never sweeps its
    # closed streams on a new HEADERS frame.
    open_inbound_streams = 0

    def _receive_frame(self, frame: Any) -> Any:
        try:
            return super()._receive_frame(frame)
        except h2.exceptions.InvalidBodyLengthError:
            return ServerConnection._body_length_mismatch(self, frame)  # type: ignore[arg-type]


class Pair:
    def __init__(self) -> None:
        self.client = h2.connection.H2Connection(CLIENT_CONFIG)
        # ServerConnection decodes with the session's IndexedFastDecoder from the start.
        self.fast = ServerConnection(config=H2_CONFIG)
        self.fast.install_limits(FloodLimits(Config()), LimitedFrameBuffer(65536, 16))
        self.ref = Reference(H2_CONFIG)
        for server in (self.fast, self.ref):
            server.initiate_connection()
        self.client.initiate_connection()
        self.feed(self.client.data_to_send())
        out = self.fast.data_to_send()
        assert out == self.ref.data_to_send()
        self.client.receive_data(out)
        self.feed(self.client.data_to_send())

    def feed(self, data: bytes) -> tuple[bool, object, object]:
        """Both servers take ``data``: (fast path taken, its outcome, the reference's)."""
        taken = False
        try:
            requests = self.fast.receive_requests(data)
            if requests is None:
                fast: object = _requests(self.fast.receive_data(data))
            else:
                taken = True
                fast = _fast_requests(requests)
        except h2.exceptions.ProtocolError as exc:
            fast = f"error {exc.error_code!r}"
        try:
            ref: object = _requests(self.ref.receive_data(data))
        except h2.exceptions.ProtocolError as exc:
            ref = f"error {exc.error_code!r}"
        return taken, fast, ref

    def assert_same(self) -> None:
        fast, ref = self.fast, self.ref
        assert fast.state_machine.state == ref.state_machine.state
        assert fast.highest_inbound_stream_id == ref.highest_inbound_stream_id
        assert fast.streams.keys() == ref.streams.keys()
        for stream_id, ours in fast.streams.items():
            theirs = ref.streams[stream_id]
            # Every attribute h2 gives a stream, as h2 set it (a stream the fast path makes
            # itself must miss none of them).
            assert type(ours) is type(theirs)
            assert _stream_vars(ours, fast) == _stream_vars(theirs, ref)
            for machine in ("state", "client", "headers_received", "trailers_received"):
                assert getattr(ours.state_machine, machine) == getattr(
                    theirs.state_machine, machine
                ), machine
            assert ours.state_machine.stream_closed_by == theirs.state_machine.stream_closed_by
            assert ours._expected_content_length == theirs._expected_content_length
            assert ours.outbound_flow_control_window == theirs.outbound_flow_control_window
            assert ours.inbound_flow_control_window == theirs.inbound_flow_control_window
            assert ours.max_outbound_frame_size == theirs.max_outbound_frame_size
        table_ours, table_theirs = fast.decoder.header_table, ref.decoder.header_table
        assert list(table_ours.dynamic_entries) == list(table_theirs.dynamic_entries)
        assert table_ours._current_size == table_theirs._current_size
        assert fast.data_to_send() == ref.data_to_send()


def _stream_vars(stream: Any, conn: Any) -> dict[str, Any]:
    """A stream's attributes with its state machine and window manager as theirs, and its
    configuration as whether it is its connection's."""
    found = dict(vars(stream))
    found["state_machine"] = vars(stream.state_machine)
    found["_inbound_window_manager"] = vars(stream._inbound_window_manager)
    found["config"] = stream.config is conn.config
    return found


def _requests(events: list[h2.events.Event]) -> list[tuple[Any, ...]]:
    """Events as the fast path reports requests; anything else stands as itself."""
    out: list[tuple[Any, ...]] = []
    for event in events:
        if isinstance(event, h2.events.RequestReceived):
            out.append(("request", event.stream_id, [tuple(h) for h in event.headers or []]))
        elif isinstance(event, h2.events.DataReceived):
            out.append(("data", event.stream_id, event.data, event.flow_controlled_length))
        elif isinstance(event, h2.events.StreamEnded):
            out.append(("end", event.stream_id))
        else:
            out.append((type(event).__name__, getattr(event, "stream_id", None)))
    return out


def _fast_requests(requests: list[tuple[int, int, Any]]) -> list[tuple[Any, ...]]:
    """The fast path's report in the same terms (what the session dispatches for it)."""
    out: list[tuple[Any, ...]] = []
    for what, stream_id, value in requests:
        if what in (REQUEST_ENDED, REQUEST_OPEN):
            out.append(("request", stream_id, [tuple(h) for h in value]))
            if what == REQUEST_ENDED:
                out.append(("end", stream_id))
        elif what == BODY_ENDED:
            out.append(("data", stream_id, value, len(value)))
            out.append(("end", stream_id))
        else:
            assert what == EVENTS
            out.extend(_requests(value))
    return out


def request(path: bytes, extra: list[tuple[bytes, bytes]], method: bytes = b"GET") -> list:
    return [
        (b":method", method),
        (b":scheme", b"http"),
        (b":authority", b"localhost"),
        (b":path", path),
        *extra,
    ]


def test_a_batch_of_gets_takes_the_fast_path() -> None:
    pair = Pair()
    for n in range(3):
        for i in range(20):
            stream_id = pair.client.get_next_available_stream_id()
            pair.client.send_headers(
                stream_id, request(b"/f%d" % i, [(b"user-agent", b"h2load")]), end_stream=True
            )
        taken, fast, ref = pair.feed(pair.client.data_to_send())
        assert taken, f"batch {n} fell back to h2"
        assert fast == ref and len(fast) == 40  # type: ignore[arg-type]
        pair.assert_same()


def test_more_body_and_trailers_go_to_h2() -> None:
    pair = Pair()
    # A request whose body is still to come: the fast path opens it.
    pair.client.send_headers(1, request(b"/upload", [], b"POST"), end_stream=False)
    taken, fast, ref = pair.feed(pair.client.data_to_send())
    assert taken and fast == ref
    pair.assert_same()
    # Its body in a later read: h2's.
    pair.client.send_data(1, b"abc")
    taken, fast, ref = pair.feed(pair.client.data_to_send())
    assert not taken and fast == ref == [("data", 1, b"abc", 3)]
    pair.assert_same()
    # HEADERS again on that open stream (its trailers): not a new request, h2's to judge.
    pair.client.send_headers(3, request(b"/a", []), end_stream=True)
    frame = pair.client.data_to_send()
    trailers = frame[:5] + (1).to_bytes(4, "big") + frame[9:]
    taken, fast, ref = pair.feed(trailers)
    assert not taken and fast == ref == [("TrailersReceived", 1), ("end", 1)]
    pair.assert_same()


def test_bad_content_length_is_the_streams_and_bad_hpack_h2s_error() -> None:
    pair = Pair()
    pair.client.send_headers(1, request(b"/a", [(b"content-length", b"x1")]), end_stream=True)
    _, fast, ref = pair.feed(pair.client.data_to_send())
    # Reported as a request (the session's validation resets the stream), not a GOAWAY.
    assert fast == ref and not str(fast).startswith("error")
    pair.assert_same()
    pair = Pair()
    garbage = b"\x00\x00\x02\x01\x05\x00\x00\x00\x01\xff\xff"  # index beyond any table
    _, fast, ref = pair.feed(garbage)
    assert str(fast).startswith("error") and str(ref).startswith("error")
    # Our decoder names it COMPRESSION_ERROR (RFC 9113 4.3), h2's PROTOCOL_ERROR: the
    # session's own behaviour, tested in test_session_core; here only that both end.


headers_values = st.binary(min_size=0, max_size=12).map(lambda b: b.replace(b"\x00", b"a"))
extras = st.lists(
    st.tuples(
        st.sampled_from(
            [b"user-agent", b"accept", b"cookie", b"x-custom", b"content-length", b"range"]
        ),
        st.one_of(headers_values, st.sampled_from([b"0", b"5", b"12", b"abc"])),
    ),
    max_size=4,
)
a_request = st.tuples(
    st.sampled_from([b"GET", b"HEAD", b"POST"]),
    st.binary(min_size=1, max_size=20).map(lambda b: b"/" + b.replace(b"\x00", b"x")),
    extras,
    st.booleans(),  # END_STREAM on the HEADERS
    # Without END_STREAM on the HEADERS: no body yet (None), or a body in one DATA frame with
    # END_STREAM, in two frames, or padded (the last two are h2's).
    st.one_of(
        st.none(),
        st.tuples(st.binary(max_size=40), st.sampled_from(["one", "two", "padded"])),
    ),
)
reads = st.lists(
    st.tuples(
        st.lists(a_request, min_size=1, max_size=8),
        st.sampled_from(["", "ping-before", "window-update-after", "bodies-last"]),
    ),
    min_size=1,
    max_size=6,
)


# Reads shaped for the fast path (GETs and one-frame bodies, content-length right or not),
# so that most take it.
fast_shaped = st.lists(
    st.tuples(
        st.lists(
            st.tuples(
                st.sampled_from([b"GET", b"POST"]),
                st.sampled_from([b"/a", b"/pkg.S/M"]),
                extras,
                st.booleans(),
                st.tuples(st.binary(max_size=40), st.just("one")),
            ),
            min_size=1,
            max_size=8,
        ),
        st.sampled_from(["", "", "bodies-last", "bodies-last", "ping-before"]),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(batches=reads)
def test_state_equals_h2s_for_any_reads(batches: list[tuple[list[Any], str]]) -> None:
    check_reads(batches)


@settings(max_examples=200, deadline=None)
@given(batches=fast_shaped)
def test_state_equals_h2s_for_fast_shaped_reads(batches: list[tuple[list[Any], str]]) -> None:
    check_reads(batches)


def check_reads(batches: list[tuple[list[Any], str]]) -> None:
    pair = Pair()
    for requests, extra in batches:
        if extra == "ping-before":
            pair.client.ping(b"12345678")
        bodies = []
        for method, path, fields, end_stream, body in requests:
            stream_id = pair.client.get_next_available_stream_id()
            pair.client.send_headers(
                stream_id, request(path, fields, method), end_stream=end_stream
            )
            if not end_stream and body is not None:
                bodies.append((stream_id, body))
                if extra != "bodies-last":
                    send_body(pair.client, stream_id, *body)
        if extra == "bodies-last":
            # After every HEADERS, last first (h2load sends a batch's HEADERS, then its DATA).
            for stream_id, body in reversed(bodies):
                send_body(pair.client, stream_id, *body)
        if extra == "window-update-after":
            pair.client.increment_flow_control_window(1000)
        _, fast, ref = pair.feed(pair.client.data_to_send())
        assert fast == ref
        pair.assert_same()
        if str(fast).startswith("error"):
            return


def send_body(client: h2.connection.H2Connection, stream_id: int, body: bytes, how: str) -> None:
    if how == "two" and body:
        client.send_data(stream_id, body[:1])
        client.send_data(stream_id, body[1:], end_stream=True)
    elif how == "padded":
        client.send_data(stream_id, body, end_stream=True, pad_length=3)
    else:
        client.send_data(stream_id, body, end_stream=True)


def test_small_bodies_take_the_fast_path() -> None:
    pair = Pair()
    for n in range(3):
        for _ in range(10):
            stream_id = pair.client.get_next_available_stream_id()
            grpc = [(b"content-type", b"application/grpc"), (b"te", b"trailers")]
            pair.client.send_headers(stream_id, request(b"/pkg.S/M", grpc, b"POST"))
            pair.client.send_data(stream_id, b"\x00\x00\x00\x00\x03abc", end_stream=True)
            stream_id = pair.client.get_next_available_stream_id()
            pair.client.send_headers(stream_id, request(b"/get", []), end_stream=True)
        taken, fast, ref = pair.feed(pair.client.data_to_send())
        assert taken, f"batch {n} fell back to h2"
        assert fast == ref and len(fast) == 10 * 5  # type: ignore[arg-type]
        pair.assert_same()


def test_a_body_of_the_wrong_length_is_h2s_stream_error() -> None:
    pair = Pair()
    for length in (b"3", b"9", b"x"):
        stream_id = pair.client.get_next_available_stream_id()
        pair.client.send_headers(stream_id, request(b"/up", [(b"content-length", length)], b"POST"))
        pair.client.send_data(stream_id, b"abcde", end_stream=True)
    taken, fast, ref = pair.feed(pair.client.data_to_send())
    assert taken and fast == ref
    assert ("StreamReset", 1) in fast and ("StreamReset", 3) in fast  # type: ignore[operator]
    pair.assert_same()


def test_bodies_beyond_the_windows_or_split_are_h2s() -> None:
    pair = Pair()
    # The peer's initial stream window is 65,535: a larger frame is h2's (FLOW_CONTROL_ERROR).
    pair.client.update_settings({h2.settings.SettingCodes.MAX_FRAME_SIZE: 1 << 20})
    pair.feed(pair.client.data_to_send())
    pair.client.send_headers(1, request(b"/up", [], b"POST"))
    pair.client.send_data(1, b"a" * 100, end_stream=False)
    pair.client.send_data(1, b"b", end_stream=True)
    taken, fast, ref = pair.feed(pair.client.data_to_send())
    assert not taken and fast == ref
    pair.assert_same()
    # Bodies after all the HEADERS, in any order (as h2load sends them): taken.
    pair.client.send_headers(3, request(b"/up", [], b"POST"))
    pair.client.send_headers(5, request(b"/up", [], b"POST"))
    pair.client.send_data(5, b"x", end_stream=True)
    pair.client.send_data(3, b"y", end_stream=True)
    taken, fast, ref = pair.feed(pair.client.data_to_send())
    assert taken and fast == ref
    pair.assert_same()
    # A DATA frame on a stream that did not open in this read, or a second one: h2's.
    pair.client.send_headers(7, request(b"/up", [], b"POST"))
    pair.feed(pair.client.data_to_send())
    pair.client.send_headers(9, request(b"/up", [], b"POST"))
    pair.client.send_data(7, b"z", end_stream=True)
    taken, fast, ref = pair.feed(pair.client.data_to_send())
    assert not taken and fast == ref
    pair.assert_same()
    pair.client.send_headers(11, request(b"/up", [], b"POST"))
    pair.client.send_data(11, b"a")
    pair.client.send_data(11, b"b", end_stream=True)
    taken, fast, ref = pair.feed(pair.client.data_to_send())
    assert not taken and fast == ref
    pair.assert_same()
