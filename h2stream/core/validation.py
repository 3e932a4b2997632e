"""Inbound header validation (RFC 9113 sections 8.2 and 8.3) in one pass.

h2 validates inbound headers with a chain of seven generators per header block, which costs
about a third of a small request here. These functions make the same checks in a single loop,
and the session answers a malformed request with a stream error, RST_STREAM(PROTOCOL_ERROR),
as RFC 9113 section 8.1.1 asks (h2 ends the whole connection instead). h2's own inbound
validation is switched off in favour of this; nothing else of h2's checking is.
"""

from __future__ import annotations

import re

# RFC 9113 section 8.2.1: a field name has none of 0x00-0x20, 0x41-0x5a (uppercase) or
# 0x7f-0xff, and no colon except the leading one of a pseudo-header.
_NAME = re.compile(rb":?[\x21-\x39\x3b-\x40\x5b-\x7e]+")
# A field value has no NUL, CR or LF.
_BAD_VALUE = re.compile(rb"[\x00\r\n]")
_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding", b"upgrade"}
)
_WHITESPACE = (0x20, 0x09)
# Names already checked: most requests repeat the same few. Bounded in count (cleared when
# full) and in name length: it lives as long as the worker, and 2,040 names of 30 KB each
# once left 59 MiB behind. Longer names are checked every time.
_GOOD_NAMES: set[bytes] = set()
_GOOD_NAMES_MAX = 2048
_GOOD_NAME_LENGTH_MAX = 64


def _field_problem(name: bytes, value: bytes) -> str | None:
    if name not in _GOOD_NAMES:
        if not _NAME.fullmatch(name):
            return f"illegal header name {name!r}"
        if len(name) <= _GOOD_NAME_LENGTH_MAX:
            if len(_GOOD_NAMES) >= _GOOD_NAMES_MAX:
                _GOOD_NAMES.clear()
            _GOOD_NAMES.add(name)
    if value and (value[0] in _WHITESPACE or value[-1] in _WHITESPACE or _BAD_VALUE.search(value)):
        return f"illegal value for header {name!r}"
    return None


def request_problem(headers: list[tuple[bytes, bytes]]) -> str | None:
    """Why a request header block is malformed, or None when it is well-formed."""
    method = scheme = path = authority = protocol = host = length = None
    regular = False
    for name, value in headers:
        problem = _field_problem(name, value)
        if problem is not None:
            return problem
        if name[0] == 0x3A:  # ":"
            if regular:
                return f"pseudo-header {name!r} after a regular header"
            if name == b":method":
                if method is not None:
                    return "duplicate :method"
                method = value
            elif name == b":path":
                if path is not None:
                    return "duplicate :path"
                path = value
            elif name == b":scheme":
                if scheme is not None:
                    return "duplicate :scheme"
                scheme = value
            elif name == b":authority":
                if authority is not None:
                    return "duplicate :authority"
                authority = value
            elif name == b":protocol":
                if protocol is not None:
                    return "duplicate :protocol"
                protocol = value
            else:
                return f"pseudo-header {name!r} not allowed in a request"
        else:
            regular = True
            if name in _CONNECTION_SPECIFIC:
                return f"connection-specific header {name!r}"
            if name == b"te" and value.lower() != b"trailers":
                return "te other than trailers"
            if name == b"host":
                if host is not None:
                    return "duplicate host"
                host = value
            elif name == b"content-length":
                # RFC 9110 section 8.6: 1*DIGIT; repeated, it must repeat the same number.
                if (
                    not value.isdigit()
                    or len(value) > 18  # past any real body, and int() of 5,000 digits fails
                    or (length is not None and int(value) != length)
                ):
                    return "malformed content-length"
                length = int(value)
    if method is None:
        return "missing :method"
    if method == b"CONNECT" and protocol is None:
        if scheme is not None or path is not None:
            return "CONNECT with :scheme or :path"
    else:
        if protocol is not None and method != b"CONNECT":
            return ":protocol outside CONNECT"
        if scheme is None or path is None:
            return "missing :scheme or :path"
    if path is not None and not path:
        return "empty :path"
    if authority is None and host is None:
        return "neither :authority nor host"
    if authority is not None and b"@" in authority:
        # RFC 9113 section 8.3.1: :authority MUST NOT include the userinfo subcomponent.
        return ":authority with userinfo"
    if authority is not None and host is not None and authority != host:
        return ":authority and host disagree"
    return None


def trailers_problem(headers: list[tuple[bytes, bytes]]) -> str | None:
    """Why a trailer block is malformed (pseudo-headers are not allowed there), or None."""
    for name, value in headers:
        problem = _field_problem(name, value)
        if problem is not None:
            return problem
        if name[0] == 0x3A:
            return f"pseudo-header {name!r} in trailers"
        if name in _CONNECTION_SPECIFIC:
            return f"connection-specific header {name!r}"
    return None
