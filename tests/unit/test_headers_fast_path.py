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
from hypothesis import given, settings
from hypothesis import strategies as st

from h2stream.config import Config
from h2stream.core.h2conn import H2_CONFIG, LimitedFrameBuffer, ServerConnection
from h2stream.core.h2conn.connection import ServerStream
from h2stream.core.limits import FloodLimits

CLIENT_CONFIG = h2.config.H2Configuration(client_side=True, header_encoding=None)


class Reference(h2.connection.H2Connection):
    """h2 itself, with the one deviation the server makes on every path: a malformed
    content-length is left to the request's validation (a stream error, RFC 9113 8.1.1)."""

    def _begin_new_stream(self, stream_id: int, allowed_ids: Any) -> Any:
        stream = super()._begin_new_stream(stream_id, allowed_ids)
        stream.__class__ = ServerStream
        return stream


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
                fast = [(sid, [tuple(h) for h in headers]) for sid, headers in requests]
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


def _requests(events: list[h2.events.Event]) -> list[tuple[Any, ...]]:
    """Events as the fast path reports requests; anything else stands as itself."""
    out: list[tuple[Any, ...]] = []
    for event in events:
        if isinstance(event, h2.events.RequestReceived) and event.stream_ended is not None:
            out.append((event.stream_id, [tuple(h) for h in event.headers or []]))
        elif isinstance(event, h2.events.StreamEnded) and out and out[-1][0] == event.stream_id:
            continue  # the END_STREAM of the request just reported
        else:
            out.append((type(event).__name__, getattr(event, "stream_id", None)))
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
        assert fast == ref and len(fast) == 20  # type: ignore[arg-type]
        pair.assert_same()


def test_bodies_and_trailers_go_to_h2() -> None:
    pair = Pair()
    pair.client.send_headers(1, request(b"/upload", [], b"POST"), end_stream=False)
    taken, fast, ref = pair.feed(pair.client.data_to_send())
    assert not taken and fast == ref
    pair.assert_same()
    # HEADERS again on that open stream (its trailers): not a new request, h2's to judge.
    pair.client.send_headers(3, request(b"/a", []), end_stream=True)
    frame = pair.client.data_to_send()
    trailers = frame[:5] + (1).to_bytes(4, "big") + frame[9:]
    taken, fast, ref = pair.feed(trailers)
    assert not taken and fast == ref == [("TrailersReceived", 1), ("StreamEnded", 1)]
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
)
reads = st.lists(
    st.tuples(
        st.lists(a_request, min_size=1, max_size=8),
        st.sampled_from(["", "ping-before", "window-update-after"]),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(batches=reads)
def test_state_equals_h2s_for_any_reads(batches: list[tuple[list[Any], str]]) -> None:
    pair = Pair()
    for requests, extra in batches:
        if extra == "ping-before":
            pair.client.ping(b"12345678")
        for method, path, fields, end_stream in requests:
            stream_id = pair.client.get_next_available_stream_id()
            pair.client.send_headers(
                stream_id, request(path, fields, method), end_stream=end_stream
            )
        if extra == "window-update-after":
            pair.client.increment_flow_control_window(1000)
        _, fast, ref = pair.feed(pair.client.data_to_send())
        assert fast == ref
        pair.assert_same()
        if str(fast).startswith("error"):
            return
