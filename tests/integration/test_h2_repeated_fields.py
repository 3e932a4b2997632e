"""A request whose header list equals the last one found well-formed on its connection skips
the checks (core/session.py): every other list is still checked, including one a handler made
by changing the list it was given. Raw frames against a real in-process server."""

from __future__ import annotations

from collections.abc import Callable

import hpack
from support.clients import RawConnection, RawH2Client
from support.frames import DATA, END_STREAM, PROTOCOL_ERROR, headers
from support.servers import InProcessServer

from h2stream.core.exchange import Exchange

FIELDS = [
    (b":method", b"GET"),
    (b":scheme", b"http"),
    (b":authority", b"localhost"),
    (b":path", b"/hello"),
    (b"accept", b"*/*"),
]
# What the handler below appends to the list it is given: malformed (uppercase name).
ADDED = (b"X-Added", b"by the handler")


def mutating_handler(exchange: Exchange) -> None:
    exchange.headers.append(ADDED)
    exchange.respond_bytes(200, b"hello\n")


def outcomes(conn: RawConnection, stream_ids: list[int]) -> dict[int, object]:
    """Each stream's whole body (its DATA up to END_STREAM), or ("reset", code)."""

    def ended(sid: int) -> bool:
        return any(
            f.stream_id == sid and f.kind == DATA and f.flags & END_STREAM for f in conn.frames
        )

    def settled() -> bool:
        resets = conn.resets()
        return all(sid in resets or ended(sid) for sid in stream_ids)

    assert conn.until(settled, 5), conn.frames
    resets = conn.resets()
    return {sid: ("reset", resets[sid]) if sid in resets else conn.body(sid) for sid in stream_ids}


def test_repeated_lists_served_and_others_still_checked(
    inprocess_factory: Callable[..., InProcessServer],
) -> None:
    server = inprocess_factory()
    encoder = hpack.Encoder()  # indexing: repeats are table references, as browsers send
    conn = RawConnection(server.port)
    try:
        path = [(b":path", b"/hello.txt")]
        good = FIELDS[:3] + path + FIELDS[4:]
        bad = [*good, (b"Accept-Language", b"en")]
        padded = [*good[:-1], (b"accept", b" padded")]
        plan = {1: good, 3: good, 5: bad, 7: good, 9: padded}
        for stream_id, fields in plan.items():
            conn.send(headers(stream_id, encoder.encode(fields)))
        hello = b"hello, h2stream\n"
        assert outcomes(conn, list(plan)) == {
            1: hello,
            3: hello,
            5: ("reset", PROTOCOL_ERROR),
            7: hello,
            9: ("reset", PROTOCOL_ERROR),
        }
        assert conn.goaway is None
    finally:
        conn.close()


def test_a_list_changed_by_its_handler_is_checked_when_a_client_sends_it(
    files_root: object, inprocess_factory: Callable[..., InProcessServer]
) -> None:
    """The handler turns the list it was given into a malformed one; a request carrying that
    malformed list must still be refused, not taken for the well-formed list seen before."""
    base = inprocess_factory()
    server = InProcessServer(base.config, mutating_handler)
    encoder = hpack.Encoder()
    conn = RawConnection(server.port)
    try:
        conn.send(headers(1, encoder.encode(FIELDS)))
        conn.send(headers(3, encoder.encode([*FIELDS, ADDED])))
        assert outcomes(conn, [1, 3]) == {1: b"hello\n", 3: ("reset", PROTOCOL_ERROR)}
    finally:
        conn.close()
        server.stop()


def test_an_empty_list_first_is_still_refused(
    inprocess_factory: Callable[..., InProcessServer],
) -> None:
    """Before any list was found well-formed there is nothing to compare with: an empty
    header block (no pseudo-header fields) on a fresh connection is malformed."""
    server = inprocess_factory()
    conn = RawConnection(server.port)
    try:
        conn.send(headers(1, b""))
        conn.send(headers(3, hpack.Encoder().encode([*FIELDS[:3], (b":path", b"/hello.txt")])))
        assert outcomes(conn, [1, 3]) == {1: ("reset", PROTOCOL_ERROR), 3: b"hello, h2stream\n"}
    finally:
        conn.close()


def test_a_repeated_list_carries_its_own_request_id(
    inprocess_factory: Callable[..., InProcessServer],
) -> None:
    """The id found in a list that passed the checks is reused with the list; a list with
    another x-request-id, or none, is another list and gets its own answer."""
    server = inprocess_factory()
    client = RawH2Client(server.port)
    try:
        plan = [[("x-request-id", "first-1")]] * 2 + [[("x-request-id", "second-2")], [], []]
        plan.append([("x-request-id", "first-1")])
        streams = [client.request("/hello.txt", extra=extra) for extra in plan]
        assert client.until(lambda: all(client.responses[s].ended for s in streams), 5)
        ids = [client.responses[s].headers.get(b"x-request-id") for s in streams]
        assert ids == [b"first-1", b"first-1", b"second-2", None, None, b"first-1"]
        assert all(client.responses[s].status == 200 for s in streams)
    finally:
        client.close()
