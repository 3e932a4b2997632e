"""h2's table of closed streams, as ``ServerConnection`` keeps it (``ClosedStreams``): bounded
however many streams a connection serves, the newest kept in order, and read by h2 as its own
table is, so a late frame on a recently reset stream is judged as h2 alone judges it."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
from h2.errors import ErrorCodes

from h2stream.core.h2conn import H2_CONFIG, ServerConnection
from h2stream.core.h2conn.connection import ClosedStreams

CLIENT_CONFIG = h2.config.H2Configuration(client_side=True, header_encoding=None)
REQUEST = [(":method", "POST"), (":scheme", "http"), (":authority", "a"), (":path", "/")]
LIMIT = ServerConnection.MAX_CLOSED_STREAMS // 2


def connected(server: h2.connection.H2Connection) -> h2.connection.H2Connection:
    client = h2.connection.H2Connection(CLIENT_CONFIG)
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    return client


def test_the_table_stays_bounded_and_keeps_the_newest_streams() -> None:
    server = ServerConnection(config=H2_CONFIG)
    client = connected(server)
    served: list[int] = []
    for batch in range(30):
        ids = [1 + 2 * (100 * batch + k) for k in range(100)]
        for stream_id in ids:
            client.send_headers(stream_id, REQUEST, end_stream=True)
        server.receive_data(client.data_to_send())
        for stream_id in ids:
            server.send_headers(stream_id, [(":status", "200")], end_stream=True)
            server.stream_finished(stream_id)
        client.receive_data(server.data_to_send())
        served += ids
        table = server._closed_streams
        assert isinstance(table, ClosedStreams)
        assert len(table) <= 2 * LIMIT, (batch, len(table))
        assert list(table)[-min(len(served), LIMIT) :] == served[-LIMIT:]
    assert len(served) == 3000 and not server.streams
    assert len(server._closed_streams) >= LIMIT


def test_h2s_own_inserts_are_bounded_too() -> None:
    table = ClosedStreams(4)
    for stream_id in range(1, 40, 2):
        table[stream_id] = None
        assert len(table) <= 8
    assert list(table)[-4:] == [33, 35, 37, 39]
    table[35] = None  # a re-inserted id keeps its place, as in h2's OrderedDict
    assert list(table)[-4:] == [33, 35, 37, 39]


def late_data_events(server: h2.connection.H2Connection) -> tuple[list[str], bytes]:
    """Stream 1 reset by the server, then 600 more streams served; then a DATA frame on 1."""
    client = connected(server)
    client.send_headers(1, REQUEST, end_stream=False)
    server.receive_data(client.data_to_send())
    server.reset_stream(1, ErrorCodes.CANCEL)
    if isinstance(server, ServerConnection):
        server.stream_finished(1)  # as the session does: out of h2's streams, into the table
        assert 1 not in server.streams and 1 in server._closed_streams
    client.receive_data(server.data_to_send())
    for stream_id in range(3, 3 + 2 * 600, 2):
        client.send_headers(stream_id, REQUEST, end_stream=True)
        server.receive_data(client.data_to_send())
        server.send_headers(stream_id, [(":status", "200")], end_stream=True)
        if isinstance(server, ServerConnection):
            server.stream_finished(stream_id)
        client.receive_data(server.data_to_send())
    # The client had not seen the reset when it sent this (a frame already in flight).
    late = client.data_to_send()
    frame = b"\x00\x00\x02\x00\x00\x00\x00\x00\x01ab"  # DATA, 2 bytes, stream 1
    events = server.receive_data(late + frame)
    return [type(event).__name__ for event in events], server.data_to_send()


def test_a_late_frame_on_a_reset_stream_is_judged_as_h2_judges_it() -> None:
    ours = late_data_events(ServerConnection(config=H2_CONFIG))
    h2s = late_data_events(h2.connection.H2Connection(H2_CONFIG))
    assert ours == h2s
