"""Content coding and generated bodies as pure logic: negotiation, framing, offsets.

No sockets: bodies emit into a recording sink under explicit ``allowed`` budgets, the way the
session's scheduler drives them, and the recorded DATA frames are parsed back, decompressed
and compared. The generated NDJSON table's offset arithmetic is checked against the bytes the
generator produces across digit-class boundaries.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import zlib
from typing import Any

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from support.frames import data_frames
from support.recording import Closer, RecordingSink

from h2stream.body.encoding import (
    CompressedBody,
    CompressedChunkBody,
    EncodingPolicy,
    encoded_headers,
    parse_accept_encoding,
)
from h2stream.body.sources import FileSource, MemorySource, SourceBody
from h2stream.handlers.synthetic import (
    PATTERN_SIZE,
    NdjsonSource,
    PatternBody,
    ndjson_rows,
    pattern_bytes,
    row_at,
    row_offset,
)


def drain(body: object, budgets: list[int], max_frame: int = 16384) -> RecordingSink:
    """Drive ``body.emit`` with each budget in turn (cycling) until done; check the budgets."""
    sink = RecordingSink(use_sendfile=False)
    turn = 0
    while not body.done:  # type: ignore[attr-defined]
        allowed = budgets[turn % len(budgets)]
        before = len(sink.out)
        sent = body.emit(sink, 1, allowed, max_frame)  # type: ignore[attr-defined]
        assert sent <= allowed
        payload = sum(length for length, _, _ in data_frames(sink.out[before:]))
        assert payload == sent
        turn += 1
        assert turn < 100_000
    return sink


def payload_of(sink: RecordingSink, max_frame: int = 16384) -> bytes:
    frames = data_frames(sink.out)
    assert all(length <= max_frame for length, _, _ in frames)
    # END_STREAM on the last frame only.
    assert [flags & 1 for _, flags, _ in frames] == [0] * (len(frames) - 1) + [1]
    return b"".join(payload for _, _, payload in frames)


# --------------------------------------------------------------------- negotiation


@pytest.mark.parametrize(
    ("value", "size", "expected"),
    [
        (None, 10_000, "identity"),  # no field: identity only
        (b"", 10_000, "identity"),  # empty field: identity only
        (b"zstd", 10_000, "zstd"),
        (b"gzip, deflate, br, zstd", 10_000, "zstd"),  # server preference on a tie
        (b"gzip, deflate", 10_000, "gzip"),  # h2load's default
        (b"x-gzip", 10_000, "gzip"),
        (b"zstd;q=0, gzip", 10_000, "gzip"),
        (b"gzip;q=0.5, zstd;q=0.4", 10_000, "gzip"),
        (b"gzip;q=0", 10_000, "identity"),
        (b"zstd;q=0, gzip;q=0", 10_000, "identity"),
        (b"gzip;q=0.5, identity", 10_000, "identity"),  # identity preferred (q=1)
        (b"identity;q=0", 10_000, ""),  # nothing acceptable: 406
        (b"*;q=0", 10_000, ""),
        (b"*;q=0, identity", 10_000, "identity"),
        (b"*", 10_000, "zstd"),
        (b"*;q=0.5, zstd;q=0", 10_000, "gzip"),
        (b"identity;q=0, zstd;q=0.1", 10_000, "zstd"),
        (b"identity;q=0, zstd", 10, "zstd"),  # refused identity overrides the threshold
        (b"zstd", 10, "identity"),  # below the threshold
        (b"zstd", None, "zstd"),  # unknown length: compressed
        (b"ZSTD ; Q=1", 10_000, "zstd"),  # case-insensitive
        (b"zstd;q=2, gzip", 10_000, "gzip"),  # an invalid weight ignores the member
        (b"zstd;q=abc", 10_000, "identity"),
        (b"zstd;q=0.001", 10_000, "zstd"),
    ],
)
def test_select(value: bytes | None, size: int | None, expected: str) -> None:
    policy = EncodingPolicy(min_size=1024)
    assert policy.select(value, size) == expected


def test_accepted_ranks_by_q_then_server_preference() -> None:
    assert parse_accept_encoding(b"gzip, zstd").accepted == ("zstd", "gzip")
    assert parse_accept_encoding(b"gzip;q=1, zstd;q=0.9").accepted == ("gzip", "zstd")
    assert parse_accept_encoding(b"br").accepted == ()


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("text/html; charset=utf-8", True),
        ("text/csv", True),
        ("application/json", True),
        ("application/problem+json", True),
        ("application/x-ndjson", True),
        ("image/svg+xml", True),
        ("application/atom+xml", True),
        ("text/javascript; charset=utf-8", True),
        ("application/octet-stream", False),
        ("image/png", False),
        ("application/zstd", False),
        ("application/gzip", False),
        (b"APPLICATION/JSON", True),
    ],
)
def test_compressible(content_type: str | bytes, expected: bool) -> None:
    assert EncodingPolicy().compressible(content_type) is expected


def test_custom_types_replace_the_defaults() -> None:
    policy = EncodingPolicy(types=["application/x-custom", "font/*"])
    assert policy.compressible("application/x-custom")
    assert policy.compressible("font/ttf")
    assert not policy.compressible("text/html")


def test_encoded_headers() -> None:
    fields = [
        (b"content-type", b"text/html"),
        (b"content-length", b"123"),
        (b"accept-ranges", b"bytes"),
        (b"etag", b'"abc"'),
    ]
    assert encoded_headers(fields, "zstd", "-zstd1") == [
        (b"content-type", b"text/html"),
        (b"etag", b'"abc-zstd1"'),
        (b"content-encoding", b"zstd"),
        (b"vary", b"accept-encoding"),
    ]


# --------------------------------------------------------------------- compressed bodies


def _decode(coding: str, data: bytes) -> bytes:
    if coding == "zstd":
        return bytes(zstandard.ZstdDecompressor().decompressobj().decompress(data))
    return gzip.decompress(data)


@settings(max_examples=30, deadline=None)
@given(
    size=st.integers(0, 300_000),
    budgets=st.lists(st.integers(0, 70_000), min_size=1, max_size=5).filter(any),
    coding=st.sampled_from(["zstd", "gzip"]),
    max_frame=st.sampled_from([16384, 16777215]),
)
def test_compressed_body_honours_every_budget(
    size: int, budgets: list[int], coding: str, max_frame: int
) -> None:
    data = (b"row %d of a compressible table\n" * (size // 20 + 1))[:size]
    policy = EncodingPolicy(zstd_level=1)
    body = CompressedBody(MemorySource(data), policy.encoder(coding, size))
    sink = drain(body, budgets, max_frame)
    assert _decode(coding, payload_of(sink, max_frame)) == data
    body.close()


def test_compressed_file_source_reads_in_bounded_chunks(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "t.txt")
    data = json.dumps([{"i": i, "v": "x" * 20} for i in range(20000)]).encode()
    with open(path, "wb") as f:
        f.write(data)
    fd = os.open(path, os.O_RDONLY)
    reads: list[int] = []

    class CountingSource(FileSource):
        __slots__ = ()

        def read(self, n: int) -> bytes:
            reads.append(n)
            return super().read(n)

    body = CompressedBody(
        CountingSource(fd, 0, len(data), Closer(fd)), EncodingPolicy().encoder("zstd")
    )
    sink = drain(body, [4096])
    assert _decode("zstd", payload_of(sink)) == data
    assert max(reads) <= 64 * 1024
    body.close()


def test_compressed_body_stops_at_zero_window() -> None:
    body = CompressedBody(MemorySource(b"a" * 100_000), EncodingPolicy().encoder("zstd"))
    sink = RecordingSink(use_sendfile=False)
    assert body.emit(sink, 1, 0, 16384) == 0
    assert sink.out == b"" and not body.done
    body.close()


@pytest.mark.parametrize("coding", ["zstd", "gzip"])
def test_compressed_chunks_flush_per_send_and_resolve_waiters(coding: str) -> None:
    loop = asyncio.new_event_loop()
    try:
        body = CompressedChunkBody(EncodingPolicy().encoder(coding))
        sink = RecordingSink(use_sendfile=False)
        decoder: Any = (
            zstandard.ZstdDecompressor().decompressobj()
            if coding == "zstd"
            else zlib.decompressobj(31)
        )
        consumed = 0
        chunks = [b"first line\n" * 50, b"second\n", os.urandom(200_000), b""]
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            waiter = loop.create_future()
            body.put(chunk, waiter, last, [(b"x-t", b"1")] if last else None)
            assert body.ready
            turns = 0
            while not waiter.done():
                sent = body.emit(sink, 1, 5000, 16384)
                assert sent <= 5000
                turns += 1
                assert turns < 1000
            # Once send() would return, what left so far decodes to every chunk handed over.
            payload = b"".join(p for _, _, p in data_frames(sink.out))
            assert decoder.decompress(payload[consumed:]) == chunk
            consumed = len(payload)
        assert body.done and not body.ready
        # Trailers carry END_STREAM: no DATA frame has it.
        assert all(flags == 0 for _, flags, _ in data_frames(sink.out))
        body.close()
    finally:
        loop.close()


def test_compressed_chunk_body_close_fails_the_waiter() -> None:
    loop = asyncio.new_event_loop()
    try:
        body = CompressedChunkBody(EncodingPolicy().encoder("zstd"))
        waiter = loop.create_future()
        body.put(os.urandom(100_000), waiter, False)
        body.emit(RecordingSink(use_sendfile=False), 1, 100, 16384)
        body.close()
        assert isinstance(waiter.exception(), ConnectionResetError)
    finally:
        loop.close()


def test_zstd_contexts_are_reused() -> None:
    policy = EncodingPolicy()
    first = policy.encoder("zstd")
    assert first.acquire(lambda: None)
    first.compress(b"abandoned mid-stream")
    first.close()
    assert policy.zstd_budget.in_use == 0
    second = policy.encoder("zstd", 5)
    assert second.acquire(lambda: None)
    out = second.compress(b"hello") + second.finish()
    assert zstandard.ZstdDecompressor().decompress(out) == b"hello"
    second.close()


# --------------------------------------------------------------------- generated bodies


def test_source_body_identity_frames() -> None:
    data = os.urandom(100_000)
    sink = drain(SourceBody(MemorySource(data)), [7000, 0, 30000])
    assert payload_of(sink) == data


@pytest.mark.parametrize("use_sendfile", [False, True])
@pytest.mark.parametrize(
    ("offset", "length"),
    [(0, 0), (0, 1), (5, 16384), (PATTERN_SIZE - 100, 70_000), (0, 3 * PATTERN_SIZE + 17)],
)
def test_pattern_body(use_sendfile: bool, offset: int, length: int) -> None:
    body = PatternBody(offset, length)
    sink = RecordingSink(use_sendfile)
    turns = 0
    while not body.done:
        assert body.emit(sink, 1, 100_000, 16384) <= 100_000
        turns += 1
        assert turns < 10_000
    if length:
        assert payload_of(sink) == pattern_bytes(offset, length)
    else:
        assert sink.out == b""


def test_row_offsets_match_the_generated_bytes() -> None:
    # Every digit class up to 5 digits, generated block by block.
    table = b"".join(
        ndjson_rows(first, min(first - first % 1000 + 1000, 12001))
        for first in [1, *range(1000, 12001, 1000)]
    )
    lines = table.split(b"\n")[:-1]
    assert [json.loads(line)["id"] for line in lines] == list(range(1, 12001))
    assert row_offset(12001) == len(table)
    for ident in (1, 2, 9, 10, 11, 99, 100, 101, 999, 1000, 1001, 9999, 10000, 12000):
        start = row_offset(ident)
        assert table[start:].startswith(b'{"id":%d,' % ident)
        assert row_at(start) == (ident, 0)
        assert row_at(start + 5) == (ident, 5)
        assert row_at(start - 1)[0] == ident - 1 or ident == 1


@pytest.mark.parametrize("start", [0, 1, 155, 5000, 150_000, 1_000_000, 1_900_000])
def test_ndjson_source_from_any_offset(start: int) -> None:
    rows = 12000
    end = row_offset(rows + 1)
    full = b"".join(
        ndjson_rows(first, min(first - first % 1000 + 1000, rows + 1))
        for first in [1, *range(1000, rows + 1, 1000)]
    )
    source = NdjsonSource(start, end, rows)
    out = bytearray()
    while chunk := source.read(10_000):
        out += chunk
    assert bytes(out) == full[start:]
    assert source.at_end


def test_ndjson_is_deterministic_far_out() -> None:
    # A row in block 10^8 is generated from its block template, not from row 1.
    ident = 123_456_789_012
    first = ndjson_rows(ident, ident + 2)
    assert first == ndjson_rows(ident, ident + 2)
    rows = first.split(b"\n")
    assert json.loads(rows[0])["id"] == ident and json.loads(rows[1])["id"] == ident + 1
    assert len(rows[0]) + 1 == row_offset(ident + 1) - row_offset(ident)
