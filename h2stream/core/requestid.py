"""Request ids: the one token that ties a client's report to our log lines about its stream.

An incoming ``x-request-id`` is kept when it is short and made of safe characters (so it cannot
forge log fields or headers); otherwise the trace id of a valid W3C ``traceparent`` is used;
otherwise, when the policy asks for it, one is generated. Generated ids are 32 lowercase hex
digits, shaped like a W3C trace id: a random per-process prefix plus a counter, which is unique
across processes and costs no system call per request.

Policy (measured, see README "Request ids"): incoming ids are always echoed; ids are generated
and returned only while the access log is on, because a unique header value per response costs
every response an uncacheable header field.
"""

from __future__ import annotations

import itertools
import os
import string
from collections.abc import Callable

from h2stream.config import Config

HEADER = b"x-request-id"
TRACEPARENT = b"traceparent"
MAX_LENGTH = 128
# Letters, digits and the punctuation ids are made of in practice (UUIDs, base64, ULIDs,
# "service:counter"); never spaces, quotes or controls, which could forge log fields.
_SAFE = (string.ascii_letters + string.digits + "-_.:+/=@").encode()
_HEX = b"0123456789abcdef"

Resolver = Callable[[list[tuple[bytes, bytes]]], str]


def safe_id(value: bytes) -> bool:
    """A client's id we may echo and log verbatim."""
    return 0 < len(value) <= MAX_LENGTH and not value.translate(None, _SAFE)


def trace_id(traceparent: bytes) -> str:
    """The trace id of a valid ``traceparent`` (W3C Trace Context, version 00), else ""."""
    parts = traceparent.strip().split(b"-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == b"ff":
        return ""
    version, trace, parent, flags = parts[0], parts[1], parts[2], parts[3]
    if version == b"00" and len(parts) != 4:
        return ""
    if len(trace) != 32 or len(parent) != 16 or len(flags) != 2:
        return ""
    if (version + trace + parent + flags).translate(None, _HEX):
        return ""  # not lowercase hex
    if trace == b"0" * 32 or parent == b"0" * 16:
        return ""
    return trace.decode()


def incoming(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's own id (``x-request-id``, else a ``traceparent`` trace id), or ""."""
    traced = ""
    for name, value in headers:
        if name == HEADER:
            if safe_id(value):
                return value.decode()
        elif name == TRACEPARENT and not traced:
            traced = trace_id(value)
    return traced


_PREFIX = ""
_counter = itertools.count(1)


def _reseed() -> None:
    """A new random prefix: at import, and in each forked worker (else ids would repeat)."""
    global _PREFIX, _counter
    _PREFIX = os.urandom(8).hex()
    _counter = itertools.count(1)


_reseed()
os.register_at_fork(after_in_child=_reseed)


def generate() -> str:
    # 2**64 ids per process before the counter would widen the id: never, in practice.
    return f"{_PREFIX}{next(_counter):016x}"


def resolve(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's id if it sent a usable one, else a new one."""
    return incoming(headers) or generate()


def resolver(config: Config) -> Resolver:
    """The per-request id function the session calls as each stream opens."""
    return resolve if config.access_log is not None else incoming
