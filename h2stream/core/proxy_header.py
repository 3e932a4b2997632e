"""The PROXY protocol header (HAProxy's, versions 1 and 2): bytes in, a result out, no I/O.

A load balancer that speaks it (HAProxy ``send-proxy`` / ``send-proxy-v2``, AWS NLB, nginx
``proxy_protocol on``) writes one header at the start of every connection, before any byte of
the client's own, naming the client's address. :func:`parse` reads it from the bytes seen so
far and answers one of three things: ``None`` (a prefix of a header: wait for more), a
:class:`ProxyHeader` (with its length: the client's bytes follow it), or a
:class:`ProxyHeaderError` naming what was wrong.

What is accepted (the spec: haproxy.org/download/2.9/doc/proxy-protocol.txt):

- v1, the text line ``PROXY TCP4|TCP6 SRC DST SPORT DPORT\\r\\n``, at most 107 bytes; and
  ``PROXY UNKNOWN ...\\r\\n``, which (like v2 LOCAL) says "use the connection's own address".
- v2, the binary form: a 16-byte head (signature, version 2, command, family, length), the
  addresses, then TLVs. TLVs are walked only to check that each fits inside the declared
  length, then skipped: nothing in them is trusted or kept. The LOCAL command (health checks
  from the balancer itself) and the UNSPEC family are accepted with no address. A TCP client
  over IPv4 or IPv6 gives an address; an IPv4-mapped IPv6 address is given as plain IPv4, so
  one client is one client whichever way the balancer wrote it. A UNIX family gives no address
  (a path names no client).

Everything is bounded: a header longer than ``limit`` bytes (v2 may declare up to 64 KiB) is
refused as soon as its length is known, before it is buffered; a v1 line without its CRLF in
107 bytes is refused at the 108th.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

V1_PREFIX = b"PROXY "
V1_MAX = 107  # the spec's bound, CRLF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEAD = 16
# A v2 header may carry TLVs (unique id, ALPN, SNI, TLS details); HAProxy's largest in practice
# are a few hundred bytes. More than this is refused before it is buffered.
DEFAULT_LIMIT = 4096

_LOCAL, _PROXY = 0x0, 0x1
_UNSPEC, _INET, _INET6, _UNIX = 0x0, 0x1, 0x2, 0x3
_STREAM = 0x1
# Address block lengths by family (v2): src + dst addresses and ports.
_ADDRESS_BYTES = {_INET: 12, _INET6: 36, _UNIX: 216}

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Why a header was refused: the label of the ``proxy_header_errors`` counter.
MISSING = "missing"  # the first bytes are no PROXY header at all
MALFORMED = "malformed"
OVERSIZED = "oversized"
UNSUPPORTED = "unsupported"  # a well-formed header we will not serve (UDP, another version)


class ProxyHeaderError(ValueError):
    """The bytes are not a header we accept; :attr:`reason` is one of the labels above."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"PROXY header {reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    version: int  # 1 or 2
    length: int  # bytes the header took: the client's own bytes start here
    # The client's address as text ("203.0.113.7", "2001:db8::1"), or None: LOCAL, UNKNOWN,
    # UNSPEC or UNIX, where the connection's own peer address stands.
    source: str | None = None
    source_port: int = 0
    destination: str | None = None
    destination_port: int = 0

    @property
    def local(self) -> bool:
        return self.source is None


def could_be_header(data: bytes) -> bool:
    """True while ``data`` may still become a header of either version."""
    return V1_PREFIX.startswith(data[:6]) or V2_SIGNATURE.startswith(data[:12])


def parse(data: bytes, limit: int = DEFAULT_LIMIT) -> ProxyHeader | None:
    """The header at the start of ``data``; None while it is incomplete (see the module)."""
    if data[:1] == b"P":
        return _parse_v1(data)
    if data[:1] == b"\r":
        return _parse_v2(data, limit)
    if not data:
        return None
    raise ProxyHeaderError(MISSING, "the connection did not start with a PROXY header")


# -- version 1 ------------------------------------------------------------------------------


def _parse_v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if not V1_PREFIX.startswith(data[:6]):
            raise ProxyHeaderError(MISSING, "the connection did not start with a PROXY header")
        if b"\n" in data:
            raise ProxyHeaderError(MALFORMED, "v1 line with a bare LF")
        if len(data) >= V1_MAX:
            raise ProxyHeaderError(OVERSIZED, f"v1 line without CRLF in {V1_MAX} bytes")
        return None
    parts = data[:end].split(b" ")
    if parts[0] != b"PROXY" or len(parts) < 2:
        raise ProxyHeaderError(MISSING, "the connection did not start with a PROXY header")
    family = parts[1]
    if family == b"UNKNOWN":
        # Whatever follows is to be ignored: the connection's own address stands.
        return ProxyHeader(1, end + 2)
    if family not in (b"TCP4", b"TCP6") or len(parts) != 6:
        raise ProxyHeaderError(MALFORMED, f"v1 family or field count ({len(parts)} fields)")
    cls: type[_Address] = ipaddress.IPv4Address if family == b"TCP4" else ipaddress.IPv6Address
    source = _v1_address(cls, parts[2])
    destination = _v1_address(cls, parts[3])
    return ProxyHeader(1, end + 2, source, _v1_port(parts[4]), destination, _v1_port(parts[5]))


def _v1_address(cls: type[_Address], text: bytes) -> str:
    try:
        return _plain(cls(text.decode("ascii")))
    except (ValueError, UnicodeDecodeError):
        raise ProxyHeaderError(MALFORMED, f"v1 address {text[:64]!r}") from None


def _v1_port(text: bytes) -> int:
    # Decimal, no sign, no leading zero (the spec), 0..65535.
    if not text.isdigit() or len(text) > 5 or (len(text) > 1 and text[:1] == b"0"):
        raise ProxyHeaderError(MALFORMED, f"v1 port {text[:16]!r}")
    port = int(text)
    if port > 65535:
        raise ProxyHeaderError(MALFORMED, f"v1 port {port}")
    return port


# -- version 2 ------------------------------------------------------------------------------


def _parse_v2(data: bytes, limit: int) -> ProxyHeader | None:
    if len(data) < V2_HEAD:
        if not V2_SIGNATURE.startswith(data[:12]):
            raise ProxyHeaderError(MISSING, "the connection did not start with a PROXY header")
        return None
    if data[:12] != V2_SIGNATURE:
        raise ProxyHeaderError(MISSING, "the connection did not start with a PROXY header")
    version, command = data[12] >> 4, data[12] & 0x0F
    family, transport = data[13] >> 4, data[13] & 0x0F
    total = V2_HEAD + int.from_bytes(data[14:16], "big")
    if version != 2:
        raise ProxyHeaderError(UNSUPPORTED, f"v2 version nibble {version}")
    if command not in (_LOCAL, _PROXY):
        raise ProxyHeaderError(MALFORMED, f"v2 command {command}")
    if total > limit:
        raise ProxyHeaderError(OVERSIZED, f"v2 header of {total} bytes (limit {limit})")
    if len(data) < total:
        return None
    if command == _LOCAL or family == _UNSPEC:
        # Health checks from the balancer itself: the block is skipped unread (the spec).
        return ProxyHeader(2, total)
    needed = _ADDRESS_BYTES.get(family)
    if needed is None:
        raise ProxyHeaderError(MALFORMED, f"v2 family {family}")
    if transport != _STREAM:
        raise ProxyHeaderError(UNSUPPORTED, f"v2 transport {transport} (only STREAM)")
    if total - V2_HEAD < needed:
        raise ProxyHeaderError(MALFORMED, f"v2 address block of {total - V2_HEAD} bytes")
    _check_tlvs(data, V2_HEAD + needed, total)
    if family == _UNIX:
        return ProxyHeader(2, total)
    size = 4 if family == _INET else 16
    block = data[V2_HEAD : V2_HEAD + needed]
    cls: type[_Address] = ipaddress.IPv4Address if family == _INET else ipaddress.IPv6Address
    ports = block[2 * size :]
    return ProxyHeader(
        2,
        total,
        _plain(cls(block[:size])),
        int.from_bytes(ports[:2], "big"),
        _plain(cls(block[size : 2 * size])),
        int.from_bytes(ports[2:4], "big"),
    )


def _check_tlvs(data: bytes, start: int, end: int) -> None:
    """Walk the TLVs (type, 2-byte length, value) only to see that each one fits."""
    at = start
    while at < end:
        if end - at < 3:
            raise ProxyHeaderError(MALFORMED, "v2 TLV cut short")
        at += 3 + int.from_bytes(data[at + 1 : at + 3], "big")
        if at > end:
            raise ProxyHeaderError(MALFORMED, "v2 TLV runs past the header")


def _plain(address: _Address) -> str:
    """The address as text; an IPv4-mapped IPv6 address as the IPv4 address it is."""
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped if mapped is not None else address)


def encode_v1(source: str, destination: str, source_port: int, destination_port: int) -> bytes:
    """A v1 line (for tests and tools): TCP4 or TCP6 by the addresses' family."""
    family = "TCP6" if ":" in source else "TCP4"
    line = f"PROXY {family} {source} {destination} {source_port} {destination_port}\r\n"
    return line.encode("ascii")


def encode_v2(
    source: str | None,
    destination: str = "127.0.0.1",
    source_port: int = 0,
    destination_port: int = 0,
    tlvs: bytes = b"",
) -> bytes:
    """A v2 header (for tests and tools); ``source`` None makes a LOCAL command."""
    if source is None:
        return V2_SIGNATURE + bytes((0x20 | _LOCAL, 0)) + len(tlvs).to_bytes(2, "big") + tlvs
    src, dst = ipaddress.ip_address(source), ipaddress.ip_address(destination)
    family = _INET if src.version == 4 else _INET6
    block = (
        src.packed
        + dst.packed
        + source_port.to_bytes(2, "big")
        + destination_port.to_bytes(2, "big")
        + tlvs
    )
    head = bytes((0x20 | _PROXY, family << 4 | _STREAM)) + len(block).to_bytes(2, "big")
    return V2_SIGNATURE + head + block
