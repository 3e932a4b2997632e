"""An ``Upgrade`` request served as HTTP/1.x after all (not h2c, or h2c not allowed).

llhttp stops at the end of an Upgrade request's head and leaves its body unparsed; a fresh
parser reads that body behind a stand-in head that carries only its framing, and goes on
with the requests after it.
"""

from __future__ import annotations

from typing import Protocol

from h2stream.core import sniff as h2c


class ParserCallbacks(Protocol):
    """httptools' callbacks, as the connection implements them."""

    def on_message_begin(self) -> None: ...

    def on_url(self, url: bytes) -> None: ...

    def on_header(self, name: bytes, value: bytes) -> None: ...

    def on_headers_complete(self) -> None: ...

    def on_body(self, body: bytes) -> None: ...

    def on_message_complete(self) -> None: ...


def body_framing(request: h2c.Http1Request) -> bytes:
    """The field that frames a request's body (llhttp checked it already), or b"" for none."""
    if request.get(b"transfer-encoding") is not None:
        return b"transfer-encoding: chunked\r\n"
    length = request.get(b"content-length")
    if length is not None and length.strip() not in (b"", b"0"):
        return b"content-length: " + length.strip() + b"\r\n"
    return b""


def stand_in_head(framing: bytes) -> bytes:
    """The head fed first to the parser that reads the body (``framing`` from body_framing)."""
    return b"POST / HTTP/1.1\r\n" + framing + b"\r\n"


class AfterIgnoredUpgrade:
    """The parser's callbacks once an Upgrade request was served as HTTP/1.x: the stand-in
    head that frames its body is skipped; its body, and every request after it on the
    connection, go to the connection as usual."""

    def __init__(self, connection: ParserCallbacks) -> None:
        self._connection = connection
        self._stand_in = True

    def on_message_begin(self) -> None:
        if not self._stand_in:
            self._connection.on_message_begin()

    def on_url(self, url: bytes) -> None:
        if not self._stand_in:
            self._connection.on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._stand_in:
            self._connection.on_header(name, value)

    def on_headers_complete(self) -> None:
        if not self._stand_in:
            self._connection.on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._connection.on_body(body)

    def on_message_complete(self) -> None:
        self._connection.on_message_complete()
        self._stand_in = False
