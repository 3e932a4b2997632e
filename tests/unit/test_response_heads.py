"""Response header blocks (h2conn/headers.py): a field list's encoding is memoized per list,
and must always decode to what the list holds at the time of the response."""

from __future__ import annotations

import hpack

from h2stream.core.h2conn import ResponseHeaderEncoder, encode_fields
from h2stream.core.session import DATES

TAIL_FIELDS = [(b"date", b"Mon, 07 Dec 2026 00:00:00 GMT"), (b"server", b"h2stream")]
TAIL = encode_fields(TAIL_FIELDS)


def decoded(block: bytes) -> list[tuple[bytes, bytes]]:
    return [tuple(field) for field in hpack.Decoder().decode(block, raw=True)]  # type: ignore[misc]


def test_a_list_changed_in_place_is_encoded_afresh() -> None:
    encoder = ResponseHeaderEncoder(hpack.Encoder())
    fields = [(b"content-type", b"text/plain"), (b"content-length", b"5")]
    first = encoder.response(b"200", fields, TAIL)
    assert encoder.response(b"200", fields, TAIL) == first
    assert decoded(first) == [(b":status", b"200"), *fields, *TAIL_FIELDS]
    fields[1] = (b"content-length", b"6")
    fields.append((b"etag", b'"x"'))
    again = encoder.response(b"200", fields, TAIL)
    assert decoded(again) == [(b":status", b"200"), *fields, *TAIL_FIELDS]
    assert decoded(encoder.response(b"304", fields, TAIL))[0] == (b":status", b"304")


def test_each_response_gets_its_own_tail() -> None:
    encoder = ResponseHeaderEncoder(hpack.Encoder())
    fields = [(b"content-length", b"0")]
    tail = TAIL + encode_fields([(b"x-request-id", b"abc")])
    assert decoded(encoder.response(b"204", fields, tail))[-1] == (b"x-request-id", b"abc")
    assert decoded(encoder.response(b"204", fields, TAIL))[-1] == (b"server", b"h2stream")


def test_the_date_and_server_block_is_this_seconds() -> None:
    for _ in range(3):  # a second may turn between the two reads
        block, date = DATES.fields_block(), DATES.get()
        if decoded(block) == [(b"date", date), (b"server", b"h2stream")]:
            return
    raise AssertionError(f"{decoded(block)} is not date {date!r} and server h2stream")
