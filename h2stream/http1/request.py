"""The checks a parsed HTTP/1.x request head must pass, and the fields a handler sees.

llhttp (``httptools``) parses; what it leaves to the application is here (RFC 9112 sections
3.2, 6 and 11): control bytes in the target and values, Host (once, required on 1.1),
differing Content-Length fields, Transfer-Encoding other than ``chunked``, the target's form.
A request that fails one raises :class:`Http1Error` with the status to answer before closing.
"""

from __future__ import annotations

from typing import NamedTuple

import httptools

from h2stream.core import requestid
from h2stream.core.exchange import Headers

# Control bytes llhttp lets through in a target or a field value (it refuses CR, LF and NUL
# in most places, not all): none may reach a handler or a log.
CONTROL = bytes(range(0x20)).replace(b"\t", b"") + b"\x7f"

# Fields the checks (or the exchange) read; every other one costs a set lookup.
_NOTED = frozenset(
    {
        b"host",
        b"content-length",
        b"transfer-encoding",
        b"expect",
        b"te",
        requestid.HEADER,
        requestid.TRACEPARENT,
    }
)

# Where the target (after an absolute form, its path) sits in request_fields' answer.
PATH_FIELD = 3

# What the head asks of the exchange (bits of request_fields' second answer).
EXPECT_CONTINUE = 1
TRAILERS = 2
CLIENT_ID = 4  # an x-request-id or traceparent to resolve
BODY_FRAMED = 8  # a content-length or transfer-encoding field (a body may follow the head)


class ParsedHead(NamedTuple):
    """A bodiless keep-alive request head as parsing and the checks left it, with its bytes:
    the same bytes at the same place (between messages) parse to the same answer."""

    raw: bytes
    method: bytes
    version: str
    headers: Headers  # never handed to an exchange: each gets a copy
    notes: int
    keep_alive: bool


class Http1Error(Exception):
    """A request this connection answers with ``status`` and then closes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def has_control(value: bytes) -> bool:
    """Whether ``value`` holds a control byte (HT allowed)."""
    # CPython's translate hands back the same object when it deletes nothing, and == of an
    # object with itself compares no bytes: the usual answer costs one scan.
    return value != value.translate(None, CONTROL)


def request_fields(
    method: bytes, version: str, target: bytes, fields: Headers, scheme: bytes
) -> tuple[Headers, int]:
    """The exchange's fields (pseudo-header fields first, as HTTP/2 has them) and what the
    head asks of the exchange (EXPECT_CONTINUE | TRAILERS | CLIENT_ID | BODY_FRAMED); raises
    Http1Error."""
    if has_control(target):
        raise Http1Error(400, "control character in the request target")
    host: bytes | None = None
    length: bytes | None = None
    notes = 0
    for name, value in fields:
        if name not in _NOTED:
            continue
        if name == b"host":
            if host is not None:
                raise Http1Error(400, "more than one host field")
            host = value
        elif name == b"content-length":
            stripped = value.strip()
            if length is not None and stripped != length:
                raise Http1Error(400, "differing content-length fields")
            length = stripped
            notes |= BODY_FRAMED
        elif name == b"transfer-encoding":
            notes |= BODY_FRAMED
            if value.strip().lower() != b"chunked":
                # Only chunked is understood; anything else cannot be framed (RFC 9112 6.1).
                raise Http1Error(501, "unsupported transfer-encoding")
        elif name == b"expect":
            if value.lower() == b"100-continue" and version != "1.0":
                notes |= EXPECT_CONTINUE
        elif name == b"te":
            if b"trailers" in value.lower():
                notes |= TRAILERS
        else:
            notes |= CLIENT_ID
    if target[:1] != b"/":
        target, host = _other_form(method, target, host)
    if host is None:
        if version != "1.0":
            raise Http1Error(400, "missing host field")
        host = b""
    headers: Headers = [
        (b":method", method),
        (b":scheme", scheme),
        (b":authority", host),
        (b":path", target),
    ]
    headers += fields
    return headers, notes


def _other_form(method: bytes, target: bytes, host: bytes | None) -> tuple[bytes, bytes | None]:
    """The asterisk form of OPTIONS, or the absolute form, whose authority replaces Host
    (RFC 9112 section 3.2.2); any other target is refused."""
    if target == b"*" and method == b"OPTIONS":
        return target, host
    if target.startswith((b"http://", b"https://")):
        try:
            url = httptools.parse_url(target)
        except httptools.HttpParserInvalidURLError:
            raise Http1Error(400, "malformed request target") from None
        host = url.host + (b":%d" % url.port if url.port else b"")
        return (url.path or b"/") + (b"?" + url.query if url.query else b""), host
    raise Http1Error(400, "malformed request target")
