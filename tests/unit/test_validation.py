"""The one-pass request validator makes the checks h2's inbound validation makes."""

from __future__ import annotations

import pytest

from h2stream.core.validation import request_problem, trailers_problem

GOOD = [
    (b":method", b"GET"),
    (b":scheme", b"http"),
    (b":authority", b"localhost"),
    (b":path", b"/a?b=c"),
    (b"user-agent", b"test"),
    (b"te", b"trailers"),
]


def with_(*changes: tuple[int, tuple[bytes, bytes] | None]) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes] | None] = list(GOOD)
    for index, field in changes:
        if index >= len(headers):
            headers.append(field)
        else:
            headers[index] = field
    return [h for h in headers if h is not None]


def test_a_plain_request_is_well_formed() -> None:
    assert request_problem(GOOD) is None


def test_connect_without_scheme_and_path_is_well_formed() -> None:
    assert request_problem([(b":method", b"CONNECT"), (b":authority", b"a:443")]) is None


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (with_((4, (b"User-Agent", b"x"))), "uppercase name"),
        (with_((4, (b"user agent", b"x"))), "space in name"),
        (with_((4, (b"", b"x"))), "empty name"),
        (with_((4, (b"us:er", b"x"))), "colon inside a name"),
        (with_((4, (b"user-agent", b"a\r\nb"))), "CR LF in value"),
        (with_((4, (b"user-agent", b"a\x00b"))), "NUL in value"),
        (with_((4, (b"user-agent", b" padded"))), "leading whitespace"),
        (with_((4, (b"user-agent", b"padded\t"))), "trailing whitespace"),
        (with_((4, (b"connection", b"keep-alive"))), "connection header"),
        (with_((4, (b"transfer-encoding", b"chunked"))), "transfer-encoding"),
        (with_((4, (b"upgrade", b"h2c"))), "upgrade"),
        (with_((5, (b"te", b"gzip"))), "te other than trailers"),
        (with_((0, None)), "missing :method"),
        (with_((1, None)), "missing :scheme"),
        (with_((3, None)), "missing :path"),
        (with_((3, (b":path", b""))), "empty :path"),
        (with_((6, (b":path", b"/late"))), "pseudo-header after a regular one"),
        (with_((6, (b":method", b"GET"))), "duplicate :method (late)"),
        ([GOOD[0], *GOOD], "duplicate :method"),
        (with_((2, (b":status", b"200"))), "response pseudo-header"),
        (with_((2, (b":foo", b"bar"))), "unknown pseudo-header"),
        (with_((2, None)), "neither :authority nor host"),
        (with_((6, (b"host", b"other"))), ":authority and host disagree"),
        (with_((2, None), (6, (b"host", b"a")), (7, (b"host", b"a"))), "two host headers"),
        ([(b":method", b"CONNECT"), (b":authority", b"a"), (b":path", b"/")], "CONNECT + path"),
        (with_((2, (b":protocol", b"websocket"))), ":protocol outside CONNECT"),
    ],
)
def test_malformed_requests_are_named(headers: list[tuple[bytes, bytes]], reason: str) -> None:
    assert request_problem(headers) is not None, reason


def test_trailers_reject_pseudo_headers_and_bad_fields() -> None:
    assert trailers_problem([(b"x-checksum", b"abc")]) is None
    assert trailers_problem([(b":path", b"/")]) is not None
    assert trailers_problem([(b"X-Checksum", b"abc")]) is not None
    assert trailers_problem([(b"connection", b"close")]) is not None
