"""Response heads as HTTP/1.x bytes: the status line and the handler's fields, memoized.

Most responses repeat a head another response already had (a small file's plan is one field
list shared by all its plain GETs): serializing it is then a dict lookup instead of a join
per field. A hit is checked against a copy of the fields it was made
from, so a list changed since (or another list at a recycled address) never gets stale bytes;
being a pure function of what it is checked against, it is shared by every connection of the
process (two servers in one process learn nothing of each other through it).
Only ``date`` and the per-request fields (the request id, ``connection``) are added per
response; ``date`` and ``server`` form one line that changes once a second.
"""

from __future__ import annotations

import http

from h2stream.core.exchange import Headers
from h2stream.core.session import DATES, SERVER_NAME

_REASONS = {s.value: s.phrase.encode() for s in http.HTTPStatus}
STATUS_LINES = {
    (version, code): b"HTTP/%s %d %s\r\n" % (version, code, reason)
    for version in (b"1.1", b"1.0")
    for code, reason in _REASONS.items()
}

# Heads kept; past this the memo starts afresh (a handler whose fields differ per response,
# a range's content-range, gets nothing from it and must not grow it).
MEMO_SIZE = 256

# id(fields) -> (fields, a copy of them, version, status, head bytes, content-length given)
_memo: dict[int, tuple[Headers, Headers, bytes, int, bytes, bool]] = {}


def status_and_fields(version: bytes, status: int, fields: Headers) -> tuple[bytes, bool]:
    """The status line and ``fields`` as bytes, and whether a content-length is among them."""
    entry = _memo.get(id(fields))
    if (
        entry is not None
        and entry[0] is fields
        and entry[3] == status
        and entry[2] == version
        and entry[1] == fields
    ):
        return entry[4], entry[5]
    line = STATUS_LINES.get((version, status)) or b"HTTP/%s %d \r\n" % (version, status)
    parts = [line]
    length_given = False
    for name, value in fields:
        if name == b"content-length":
            length_given = True
        parts.append(name + b": " + value + b"\r\n")
    head = b"".join(parts)
    if len(_memo) >= MEMO_SIZE:
        _memo.clear()
    _memo[id(fields)] = (fields, list(fields), version, status, head, length_given)
    return head, length_given


class _DateLine:
    """``date`` and ``server`` as one line, rebuilt when the date changes (once a second)."""

    __slots__ = ("_date", "_line")

    def __init__(self) -> None:
        self._date = b""
        self._line = b""

    def get(self) -> bytes:
        date = DATES.get()
        if date is not self._date:
            self._date = date
            self._line = b"date: " + date + b"\r\nserver: " + SERVER_NAME + b"\r\n"
        return self._line


DATE_LINE = _DateLine()
