"""``ServerConnection.headers_sent`` and ``end_stream_sent`` move h2's state machines exactly
as h2's own transition tables do (``process_input``), in every state a stream can be in when
the session answers it, including those where h2 refuses (the same error, the same state).

Two identical server connections receive the same request; one answers through our methods,
the other through h2's inputs; the stream and connection state machines must then agree
attribute for attribute."""

from __future__ import annotations

import itertools
from typing import Any

import h2.config
import h2.connection
import h2.exceptions
import pytest
from h2.connection import ConnectionInputs, ConnectionState
from h2.stream import StreamInputs, StreamState

from h2stream.core.h2conn import H2_CONFIG, ServerConnection

CLIENT_CONFIG = h2.config.H2Configuration(client_side=True, header_encoding=None)
REQUEST = [(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/")]


def server_with_stream(request_ended: bool) -> ServerConnection:
    client = h2.connection.H2Connection(CLIENT_CONFIG)
    client.initiate_connection()
    client.send_headers(1, REQUEST, end_stream=request_ended)
    server = ServerConnection(config=H2_CONFIG)
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    return server


def by_h2(server: ServerConnection, stream: Any, step: str, end_stream: bool) -> None:
    machine = stream.state_machine
    if step == "headers":
        machine.process_input(StreamInputs.SEND_HEADERS)
        server.state_machine.process_input(ConnectionInputs.SEND_HEADERS)
        if end_stream:
            machine.process_input(StreamInputs.SEND_END_STREAM)
    else:
        machine.process_input(StreamInputs.SEND_DATA)
        machine.process_input(StreamInputs.SEND_END_STREAM)


def by_us(server: ServerConnection, stream: Any, step: str, end_stream: bool) -> None:
    if step == "headers":
        server.headers_sent(stream, end_stream)
    else:
        server.end_stream_sent(stream)


def outcome(
    answer: Any, server: ServerConnection, setup: Any, steps: list[tuple[str, bool]]
) -> Any:
    stream = server.streams[1]
    setup(server, stream)
    errors = []
    for step, end_stream in steps:
        try:
            answer(server, stream, step, end_stream)
        except h2.exceptions.ProtocolError as exc:
            errors.append(type(exc))
    return vars(stream.state_machine), server.state_machine.state, errors


def _reset_by_peer(server: ServerConnection, stream: Any) -> None:
    stream.state_machine.process_input(StreamInputs.RECV_RST_STREAM)


def _server_closed(server: ServerConnection, stream: Any) -> None:
    server.state_machine.state = ConnectionState.CLOSED


def _half_closed_local(server: ServerConnection, stream: Any) -> None:
    stream.state_machine.state = StreamState.HALF_CLOSED_LOCAL


def _as_client(server: ServerConnection, stream: Any) -> None:
    stream.state_machine.client = True


SETUPS = {
    "as_received": lambda server, stream: None,
    "reset_by_peer": _reset_by_peer,
    "connection_closed": _server_closed,
    "half_closed_local": _half_closed_local,
    "client_stream": _as_client,
}
STEPS = [
    [("headers", True)],
    [("headers", False), ("data", True)],
    [("headers", False), ("headers", True)],  # trailers
    [("headers", True), ("headers", True)],  # after the end: refused
    [("data", True)],  # DATA before any headers
    [("headers", False), ("data", True), ("data", True)],
]


@pytest.mark.parametrize(
    ("request_ended", "setup", "steps"),
    list(itertools.product([True, False], sorted(SETUPS), STEPS)),
)
def test_same_state_as_h2(request_ended: bool, setup: str, steps: list[tuple[str, bool]]) -> None:
    ours = outcome(by_us, server_with_stream(request_ended), SETUPS[setup], steps)
    h2s = outcome(by_h2, server_with_stream(request_ended), SETUPS[setup], steps)
    assert ours == h2s
