"""Header-block attacks: CONTINUATION floods (CVE-2024-27316 family) and HPACK bombs.

A header block is capped while it is collected, in frames (``--max-header-block-frames``)
and raw bytes (``--max-header-block-size``), and when decoded (SETTINGS_MAX_HEADER_LIST_SIZE,
``--max-header-list-size``). Each attack offers far more than the caps and must end in
GOAWAY(ENHANCE_YOUR_CALM) with the server's memory flat.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import hpack
import pytest
from support.attacks import MIB, Footprint, attack_running, served_during, start
from support.clients import RawConnection
from support.frames import ENHANCE_YOUR_CALM, continuation, headers, request_block

# What each round offers: 32 MiB of header block, against caps of 64 KiB and 16 frames.
OFFERED = 32 * MIB
CHUNK = 16384  # SETTINGS_MAX_FRAME_SIZE: the largest frame the server accepts


def _continuation_frames() -> tuple[bytes, bytes]:
    """Zero-length CONTINUATION frames, never ending the block: cheap for the attacker."""
    return headers(1, request_block(), end_headers=False), continuation(1, b"") * 4096


def _continuation_bytes() -> tuple[bytes, bytes]:
    """Full-size CONTINUATION frames of header bytes: what h2 alone would buffer up to 1 MiB."""
    return headers(1, request_block(), end_headers=False), continuation(1, b"a" * CHUNK) * 64


def _hpack_bomb() -> tuple[bytes, bytes]:
    """One 4,000-byte header put in the dynamic table, then referenced by a one-byte index
    10,000 times: 14 KB on the wire, 40 MB decoded."""
    encoder = hpack.Encoder()
    block = request_block()
    block += encoder.encode([(b"x-bomb", b"a" * 4000)])  # indexed: dynamic table entry 62
    block += b"\xbe" * 10_000  # 0x80 | 62: "the header at index 62"
    assert len(block) <= CHUNK
    return headers(1, block), b""


ATTACKS = {
    "continuation_frames": ("header_block_frames", _continuation_frames),
    "continuation_bytes": ("header_block_size", _continuation_bytes),
    "hpack_bomb": ("header_list_size", _hpack_bomb),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_header_block_attack_ends_before_memory_grows(
    name: str, server_factory: Callable[..., Any], files_root: Path
) -> None:
    kind, build = ATTACKS[name]
    server, metrics = start(server_factory)
    before = metrics.limit_events().get(kind, 0)
    footprint = Footprint(server)
    expected = (files_root / "mib.bin").read_bytes()
    first, more = build()
    answers: list[int] = []

    def mount() -> None:
        conn = RawConnection(server.port, initial=first)
        try:
            offered = len(first)
            while more and offered < OFFERED and conn.goaway is None:
                if not conn.send(more, timeout=5):
                    break  # the server has closed: the expected end
                offered += len(more)
                conn.read(0)
            assert conn.until(lambda: conn.goaway is not None, 10), f"{name}: no GOAWAY"
            assert conn.goaway is not None
            answers.append(conn.goaway.error_code)
            assert conn.wait_closed(10)
        finally:
            conn.close()

    with attack_running(mount) as rounds:
        served_during(server.port, "/mib.bin", expected)
        done = rounds()
    assert answers and set(answers) == {ENHANCE_YOUR_CALM}, answers
    assert metrics.wait_for(kind, before + done) >= before + done
    # Each round offered up to 32 MiB (hpack: 40 MB decoded); the server kept none of it.
    footprint.assert_bounded(rss_slack=16 * MIB)


def test_large_but_legal_header_block_is_served(
    server_factory: Callable[..., Any], files_root: Path
) -> None:
    """Near the caps but within them: 40 KiB of headers in a HEADERS and 3 CONTINUATIONs."""
    server, _ = start(server_factory)
    block = request_block("/hello.txt", extra=380)  # ~40 KiB raw, under 64 KiB decoded
    assert 32 * 1024 < len(block) < 60 * 1024
    parts = [block[i : i + CHUNK] for i in range(0, len(block), CHUNK)]
    payload = headers(1, parts[0], end_headers=False)
    payload += b"".join(
        continuation(1, p, end_headers=i == len(parts) - 2) for i, p in enumerate(parts[1:])
    )
    conn = RawConnection(server.port, initial=payload)
    try:
        expected = (files_root / "hello.txt").read_bytes()
        assert conn.until(lambda: conn.body(1) == expected, 10), conn.frames[-3:]
        assert conn.goaway is None
    finally:
        conn.close()
