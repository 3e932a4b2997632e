"""The PROXY header parser (h2stream.core.proxy_header): both versions, every refusal, and
byte-at-a-time feeding equal to the whole header at once (what a slow or split TCP read gives)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from h2stream.core import proxy_header as ph
from h2stream.core.proxy_header import ProxyHeader, ProxyHeaderError, encode_v1, encode_v2, parse

HTTP = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def trickle(data: bytes) -> ProxyHeader:
    """Feed ``data`` a byte more at a time, as reads would: None until the header is whole."""
    for end in range(1, len(data) + 1):
        found = parse(data[:end])
        if found is not None:
            return found
    raise AssertionError("never complete")


def reason(data: bytes, limit: int = ph.DEFAULT_LIMIT) -> str:
    with pytest.raises(ProxyHeaderError) as caught:
        parse(data, limit)
    return caught.value.reason


def test_v1_tcp4_and_tcp6() -> None:
    line = encode_v1("203.0.113.7", "192.0.2.1", 51000, 443)
    assert line == b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\r\n"
    header = parse(line + HTTP)
    assert header == ProxyHeader(1, len(line), "203.0.113.7", 51000, "192.0.2.1", 443)
    six = encode_v1("2001:db8::7", "2001:db8::1", 1, 65535)
    assert parse(six) == ProxyHeader(1, len(six), "2001:db8::7", 1, "2001:db8::1", 65535)
    assert trickle(line + HTTP) == header


def test_v1_unknown_is_the_peers_own_address() -> None:
    for line in (b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"):
        header = parse(line + HTTP)
        assert header is not None and header.local and header.length == len(line)


def test_v2_inet_inet6_mapped_and_tlvs_skipped() -> None:
    block = encode_v2("203.0.113.7", "192.0.2.1", 51000, 8080)
    assert len(block) == 16 + 12
    assert parse(block + HTTP) == ProxyHeader(2, 28, "203.0.113.7", 51000, "192.0.2.1", 8080)
    six = encode_v2("2001:db8::7", "2001:db8::1", 1, 2)
    assert parse(six) == ProxyHeader(2, 16 + 36, "2001:db8::7", 1, "2001:db8::1", 2)
    # An IPv4 client written as IPv4-mapped IPv6 is the same client.
    mapped = parse(encode_v2("::ffff:198.51.100.3", "::1", 3, 4))
    assert mapped is not None and mapped.source == "198.51.100.3"
    # TLVs (ALPN "h2", authority, a NOOP) are walked and skipped: the client's bytes follow.
    tlvs = b"\x01\x00\x02h2" + b"\x02\x00\x07example" + b"\x04\x00\x00"
    with_tlvs = encode_v2("203.0.113.7", "192.0.2.1", 1, 2, tlvs)
    header = trickle(with_tlvs + b"PRI")
    assert header.length == len(with_tlvs) and header.source == "203.0.113.7"


def test_v2_local_and_unspec_carry_no_address() -> None:
    local = encode_v2(None)
    assert parse(local + HTTP) == ProxyHeader(2, 16)
    # LOCAL with a block (HAProxy's health checks may carry one): skipped unread.
    padded = ph.V2_SIGNATURE + b"\x20\x11\x00\x0c" + bytes(12)
    assert parse(padded) == ProxyHeader(2, 28)
    unspec = ph.V2_SIGNATURE + b"\x21\x00\x00\x00"
    assert parse(unspec) == ProxyHeader(2, 16)
    unix = ph.V2_SIGNATURE + b"\x21\x31" + (216).to_bytes(2, "big") + bytes(216)
    header = parse(unix)
    assert header is not None and header.local


@pytest.mark.parametrize(
    "data",
    [HTTP, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"\x16\x03\x01\x02\x00", b"POST /", b"\r\n\r\nX"],
)
def test_missing_header(data: bytes) -> None:
    assert reason(data) == ph.MISSING


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY TCP4 203.0.113.7 192.0.2.1 51000\r\n",  # a field short
        b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 443 9\r\n",  # a field more
        b"PROXY TCP5 203.0.113.7 192.0.2.1 1 2\r\n",
        b"PROXY TCP4 2001:db8::1 192.0.2.1 1 2\r\n",  # family and address disagree
        b"PROXY TCP6 203.0.113.7 2001:db8::1 1 2\r\n",
        b"PROXY TCP4 203.0.113.007 192.0.2.1 1 2\r\n",  # leading zeros
        b"PROXY TCP4 256.0.0.1 192.0.2.1 1 2\r\n",
        b"PROXY TCP4 203.0.113.7 192.0.2.1 65536 2\r\n",
        b"PROXY TCP4 203.0.113.7 192.0.2.1 080 2\r\n",
        b"PROXY TCP4 203.0.113.7 192.0.2.1 -1 2\r\n",
        b"PROXY TCP4  203.0.113.7 192.0.2.1 1 2\r\n",  # two spaces
        b"PROXY TCP4 203.0.113.7 192.0.2.1 1 2\n",  # a bare LF
        b"PROXY TCP4 \xff.0.0.1 192.0.2.1 1 2\r\n",
    ],
)
def test_v1_malformed(line: bytes) -> None:
    assert reason(line) == ph.MALFORMED


def test_v1_oversized_at_the_108th_byte() -> None:
    long = b"PROXY TCP6 " + b"f" * 200
    assert parse(long[:106]) is None  # could still end in CRLF
    assert reason(long[:107]) == ph.OVERSIZED
    assert reason(long) == ph.OVERSIZED


def test_v2_refusals() -> None:
    good = encode_v2("203.0.113.7", "192.0.2.1", 1, 2)
    assert reason(good[:12] + b"\x31" + good[13:]) == ph.UNSUPPORTED  # version 3
    assert reason(good[:12] + b"\x22" + good[13:]) == ph.MALFORMED  # command 2
    assert reason(good[:13] + b"\x12" + good[14:]) == ph.UNSUPPORTED  # UDP
    assert reason(good[:13] + b"\x41" + good[14:]) == ph.MALFORMED  # family 4
    short_block = good[:14] + (8).to_bytes(2, "big") + good[16:24]
    assert reason(short_block) == ph.MALFORMED
    # A TLV whose length runs past the header, and one cut inside its own head.
    assert reason(encode_v2("203.0.113.7", "192.0.2.1", 1, 2, b"\x04\x00\x09ab")) == ph.MALFORMED
    assert reason(encode_v2("203.0.113.7", "192.0.2.1", 1, 2, b"\x04\x00")) == ph.MALFORMED
    # Oversized is known from the head alone: nothing past it was needed.
    huge = ph.V2_SIGNATURE + b"\x21\x11" + (60000).to_bytes(2, "big")
    assert reason(huge) == ph.OVERSIZED
    assert reason(good, limit=20) == ph.OVERSIZED
    # Incomplete, but still a header: wait.
    assert parse(huge[:15]) is None
    assert parse(good[:-1]) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_only_typed_errors(data: bytes) -> None:
    """Any bytes: a header, a wait, or a ProxyHeaderError with a known reason (never another
    exception), and a result that never claims more bytes than it was given."""
    try:
        header = parse(data)
    except ProxyHeaderError as exc:
        assert exc.reason in (ph.MISSING, ph.MALFORMED, ph.OVERSIZED, ph.UNSUPPORTED)
        return
    assert header is None or header.length <= len(data)


@settings(max_examples=200, deadline=None)
@given(
    st.ip_addresses(v=4) | st.ip_addresses(v=6),
    st.integers(0, 65535),
    st.binary(max_size=40),
    st.booleans(),
)
def test_fuzz_round_trip(address: object, port: int, after: bytes, v2: bool) -> None:
    source = str(address)
    destination = "::1" if ":" in source else "127.0.0.1"
    data = (
        encode_v2(source, destination, port, 80) if v2 else encode_v1(source, destination, port, 80)
    )
    header = trickle(data + after)
    assert header.length == len(data)
    assert header.source_port == port
    mapped = getattr(address, "ipv4_mapped", None)
    assert header.source == str(mapped if mapped is not None else address)
