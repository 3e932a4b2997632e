"""The decoder's cache of blocks (h2conn/headers.py): a block that added nothing to the table
decodes the same while the table is unchanged, and only then. Against hpack's own decoder fed
the same blocks: every answer and every error must be the same."""

from __future__ import annotations

import random

import hpack
import pytest

from h2stream.core.h2conn import IndexedFastDecoder
from h2stream.core.h2conn.headers import HeaderCompressionError

REQUEST = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/a")]


def both(blocks: list[bytes]) -> tuple[list[object], list[object]]:
    ours, reference = IndexedFastDecoder(), hpack.Decoder()
    got, want = [], []
    for block in blocks:
        try:
            got.append(ours.decode(block, raw=True))
        except HeaderCompressionError:
            got.append("error")
        try:
            want.append(reference.decode(block, raw=True))
        except hpack.HPACKError:
            want.append("error")
    return got, want


def test_indexed_repeats_follow_the_table() -> None:
    """The same indexed bytes name other fields (or none) once insertions have evicted the
    entries they named: each repeat decodes to what the table holds at that moment."""
    encoder = hpack.Encoder()
    encoder.header_table_size = 256  # small: a few insertions evict the older ones
    blocks = []
    for round_ in range(6):
        first = encoder.encode([*REQUEST, (b":authority", b"host%d" % (round_ % 2))])
        repeat = encoder.encode([*REQUEST, (b":authority", b"host%d" % (round_ % 2))])
        filler = encoder.encode([(b"x-fill", b"v" * (40 + round_))])
        blocks += [first, repeat, repeat, filler, repeat]
    # The repeat of the last round re-sent after the filler evicted what it named.
    blocks.append(blocks[1])
    got, want = both(blocks)
    assert got == want
    assert got[0] == got[1] == got[2]  # the repeat while the table holds what it names
    assert "error" in got  # a repeat whose entries were evicted: refused, as hpack does


@pytest.mark.parametrize("seed", range(20))
def test_random_blocks_decode_as_hpack_does(seed: int) -> None:
    rng = random.Random(seed)
    encoder = hpack.Encoder()
    encoder.header_table_size = rng.choice([0, 64, 256, 4096])
    names = [b"a", b"bb", b"x-request-id", b":path", b"accept"]
    sent: list[bytes] = []
    for _ in range(60):
        choice = rng.random()
        if choice < 0.4 and sent:
            sent.append(rng.choice(sent))  # an earlier block again, byte for byte
        elif choice < 0.5:
            sent.append(bytes(rng.randrange(0x80, 0x100) for _ in range(rng.randrange(1, 6))))
        else:
            fields = [(rng.choice(names), b"%d" % rng.randrange(8)) for _ in range(3)]
            sent.append(encoder.encode(fields))
    got, want = both(sent)
    assert got == want
