"""The little HTTP/1.1 a cleartext HTTP/2 server needs: tell the preface from a request head,
take ``Upgrade: h2c`` (RFC 7540 section 3.2), and refuse everything else with a valid response.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# A request head larger than this is refused with 431 before it is buffered any further.
MAX_HEAD_BYTES = 16 * 1024

# Connection-specific fields that must not be carried into HTTP/2 (RFC 9113 section 8.2.2).
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"upgrade",
        b"http2-settings",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"te",
        b"host",
    }
)
_TOKEN_CHARS = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


# Bytes no request head contains (all controls but HT, LF and CR; and DEL).
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class BadRequest(Exception):
    """The bytes are not an HTTP/1.1 request head we can read."""


class HeadTooLarge(BadRequest):
    """The request head did not end within MAX_HEAD_BYTES (answered 431, not 400)."""


@dataclass(frozen=True, slots=True)
class Http1Request:
    method: bytes
    target: bytes
    version: bytes
    headers: list[tuple[bytes, bytes]]  # names lowercased, values stripped

    def get(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def tokens(self, name: bytes) -> set[bytes]:
        """Comma-separated tokens of every field ``name``, lowercased."""
        found: set[bytes] = set()
        for key, value in self.headers:
            if key == name:
                found.update(t.strip().lower() for t in value.split(b","))
        return found


def could_be_preface(data: bytes) -> bool:
    """True while ``data`` is a prefix of the HTTP/2 connection preface."""
    return PREFACE.startswith(data[: len(PREFACE)])


def _hopeless(data: bytes) -> bool:
    """True when an incomplete head can no longer become a request: the method is not a
    short token, or a control byte shows up (a TLS ClientHello, binary garbage)."""
    space = data.find(b" ")
    method = data if space < 0 else data[:space]
    if len(method) > 32 or not set(method) <= _TOKEN_CHARS:
        return True
    return bool(_CONTROL.search(data))


def parse_head(data: bytes) -> tuple[Http1Request, int] | None:
    """Parse a request head; None while incomplete. Returns the request and its length."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > MAX_HEAD_BYTES:
            raise HeadTooLarge("request head too large")
        if _hopeless(data):
            raise BadRequest("not an HTTP request")
        return None
    lines = data[:end].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[0] or not set(parts[0]) <= _TOKEN_CHARS:
        raise BadRequest("malformed request line")
    method, target, version = parts
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise BadRequest("unsupported protocol version")
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or not set(name) <= _TOKEN_CHARS:
            raise BadRequest("malformed header field")
        headers.append((name.lower(), value.strip(b" \t")))
    if sum(1 for name, _ in headers if name == b"host") > 1:
        raise BadRequest("more than one host field")  # RFC 9112 section 3.2: 400
    return Http1Request(method, target, version, headers), end + 4


def upgrade_settings(request: Http1Request) -> bytes | None:
    """The HTTP2-Settings value when ``request`` is a valid h2c upgrade we accept (whether
    the value itself is well formed is :func:`settings_problem`'s question)."""
    # An HTTP/1.0 request's Upgrade is ignored (RFC 9110 section 7.8); more than one
    # HTTP2-Settings field forbids the upgrade (RFC 7540 section 3.2.1).
    if request.version != b"HTTP/1.1" or b"h2c" not in request.tokens(b"upgrade"):
        return None
    connection = request.tokens(b"connection")
    settings = request.get(b"http2-settings")
    if settings is None or b"upgrade" not in connection or b"http2-settings" not in connection:
        return None
    if sum(1 for name, _ in request.headers if name == b"http2-settings") > 1:
        return None
    # A body would have to be read as HTTP/1.1 first; we take only body-less upgrades.
    if request.get(b"transfer-encoding") is not None:
        return None
    length = request.get(b"content-length")
    if length not in (None, b"0"):
        return None
    return settings


_BASE64URL = re.compile(rb"[A-Za-z0-9_-]*")
# Settings whose values RFC 9113 section 6.5.2 bounds (h2 refuses the others' bad values too,
# but only after the 101 has gone): ENABLE_PUSH, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE,
# ENABLE_CONNECT_PROTOCOL (RFC 8441).
_SETTING_BOUNDS = {2: (0, 1), 4: (0, (1 << 31) - 1), 5: (1 << 14, (1 << 24) - 1), 8: (0, 1)}


def settings_problem(value: bytes) -> str | None:
    """What is wrong with an HTTP2-Settings value (RFC 7540 section 3.2.1: a SETTINGS payload
    in base64url without padding), or None. Checked before the 101, so a bad one is a 400."""
    text = value.strip()
    if not _BASE64URL.fullmatch(text) or len(text) % 4 == 1:
        return "not base64url"
    payload = base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))
    if len(payload) % 6:
        return "not a whole number of settings"
    for offset in range(0, len(payload), 6):
        identifier = int.from_bytes(payload[offset : offset + 2], "big")
        setting = int.from_bytes(payload[offset + 2 : offset + 6], "big")
        low, high = _SETTING_BOUNDS.get(identifier, (0, (1 << 32) - 1))
        if not low <= setting <= high:
            return f"setting {identifier} out of range: {setting}"
    return None


def upgraded_headers(request: Http1Request) -> list[tuple[bytes, bytes]]:
    """The HTTP/2 header list equivalent to an upgraded request (it becomes stream 1)."""
    authority = request.get(b"host") or b""
    headers = [
        (b":method", request.method),
        (b":scheme", b"http"),
        (b":authority", authority),
        (b":path", request.target),
    ]
    headers.extend((n, v) for n, v in request.headers if n not in _HOP_BY_HOP)
    return headers


SWITCHING_PROTOCOLS = (
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
)


def without_body(response: bytes) -> bytes:
    """The same response for a HEAD request: its head only (RFC 9110 section 9.3.2)."""
    return response[: response.index(b"\r\n\r\n") + 4]


def error_response(status: int, reason: str, message: str) -> bytes:
    body = message.encode() + b"\n"
    return (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Server: h2stream\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


HTTP2_REQUIRED = error_response(
    505,
    "HTTP Version Not Supported",
    "This server speaks HTTP/2 only: use prior knowledge (h2c), Upgrade: h2c, or TLS with ALPN h2.",
)
BAD_REQUEST = error_response(400, "Bad Request", "Malformed request: this server speaks HTTP/2.")
HEAD_TOO_LARGE = error_response(431, "Request Header Fields Too Large", "Request head too large.")
BAD_SETTINGS = error_response(400, "Bad Request", "Malformed HTTP2-Settings header: no upgrade.")
