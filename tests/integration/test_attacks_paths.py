"""Path attacks over the wire: traversal in every encoding, overlong and invalid UTF-8, NUL,
backslashes, and symlink escapes, sent as raw ``:path`` bytes to a live server. None may
return a byte from outside ROOT. (tests/unit/test_files.py checks the same table against
``FileRoot.open`` directly; this shows the whole request path keeps the promise.)

A hard link inside ROOT to a file outside it *is* inside ROOT as far as any path check can
tell (it is the same inode under a name in ROOT), so it is served: the operator owns ROOT and
whoever may create links in it. The last test documents that.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hpack
import pytest
from support.attacks import Footprint, attack_running, served_during, start
from support.clients import RawConnection, fetch
from support.frames import HEADERS, PROTOCOL_ERROR, continuation, headers, request_block

SECRET = b"TOP SECRET: outside ROOT\n"
RESET = -1  # the request is malformed as HTTP/2 (RFC 9113 8.3.1): RST_STREAM(PROTOCOL_ERROR)
LONG = b"x" * 300

# (raw :path, expected status, or RESET)
TABLE: list[tuple[bytes, int]] = [
    (b"/../secret.txt", 404),
    (b"/..", 404),
    (b"/../../../../../../etc/passwd", 404),
    (b"/sub/../../secret.txt", 404),
    (b"/%2e%2e/secret.txt", 404),
    (b"/%2E%2e/secret.txt", 404),
    (b"/.%2e/secret.txt", 404),
    (b"/%2e./secret.txt", 404),
    (b"/sub/%2e%2e/%2e%2e/secret.txt", 404),
    (b"/..%2fsecret.txt", 404),
    (b"/%2F..%2Fsecret.txt", 404),
    (b"/%252e%252e/secret.txt", 404),  # decoded once only
    (b"//secret.txt", 404),
    (b"/%2fsecret.txt", 404),
    (b"/..\\secret.txt", 404),
    (b"/..%5c..%5csecret.txt", 404),
    (b"/sub\\..\\..\\secret.txt", 404),
    (b"/..;/secret.txt", 404),
    (b"/secret.txt%00.html", 400),
    (b"/hello.txt%00", 400),
    (b"/hello.txt\x7f", 400),
    (b"/%c0%ae%c0%ae/secret.txt", 400),  # overlong UTF-8 dots
    (b"/%c0%afsecret.txt", 400),  # overlong UTF-8 slash
    (b"/%e0%80%ae%e0%80%ae/secret.txt", 400),
    (b"/%ff", 400),
    (b"/%ed%a0%80", 400),  # an encoded UTF-16 surrogate
    (b"/\xff", 400),
    (b"/%", 400),
    (b"/%zz", 400),
    (b"/%u002e%u002e/secret.txt", 400),
    (b"*", 400),
    (b"secret.txt", 400),
    (b"http://example.com/secret.txt", 400),
    (b"/" + b"%2e%2e/" * 3000 + b"secret.txt", 404),
    (b"/" + b"../" * 4000 + b"secret.txt", 404),
    (b"/" + b"/".join([LONG] * 20), 404),
    (b"/link-out", 404),
    (b"/link-abs-out", 404),
    (b"/dirlink-out/secret.txt", 404),
    (b"/dirlink-out/../secret.txt", 404),
    (b"/link-loop", 404),
    # Not even a valid field value: the stream is reset before any file system lookup.
    (b"/hello.txt\x00", RESET),
    (b"/hello\n.txt", RESET),
    (b"", RESET),
]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """ROOT with escape hatches pointing at ``outside/``."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    root = tmp_path / "root"
    root.mkdir()
    (root / "hello.txt").write_bytes(b"hello\n")
    (root / "sub").mkdir()
    (root / "link-out").symlink_to("../outside/secret.txt")
    (root / "link-abs-out").symlink_to(outside / "secret.txt")
    (root / "dirlink-out").symlink_to(outside)
    (root / "link-loop").symlink_to("link-loop")
    os.link(outside / "secret.txt", root / "hardlink.txt")
    return root


def _request(stream_id: int, path: bytes) -> bytes:
    block = request_block(path)
    if len(block) <= 16384:
        return headers(stream_id, block)
    parts = [block[i : i + 16384] for i in range(0, len(block), 16384)]
    last = len(parts) - 1
    frames = [headers(stream_id, parts[0], end_headers=False)]
    frames += [continuation(stream_id, p, end_headers=i == last) for i, p in enumerate(parts) if i]
    return b"".join(frames)


def _statuses(conn: RawConnection) -> dict[int, int]:
    """Every response's :status, decoding header blocks in the order they arrived."""
    decoder = hpack.Decoder()
    statuses = {}
    for got in conn.frames:
        if got.kind == HEADERS:
            statuses[got.stream_id] = int(dict(decoder.decode(got.payload, raw=True))[b":status"])
    return statuses


def test_path_table_over_the_wire(server_factory: Callable[..., Any], tree: Path) -> None:
    server, _ = start(server_factory, root=tree)
    footprint = Footprint(server)
    sids = [2 * i + 1 for i in range(len(TABLE))]
    request = b"".join(_request(s, path) for s, (path, _) in zip(sids, TABLE, strict=True))
    outcomes: list[dict[bytes, int]] = []

    def mount() -> None:
        conn = RawConnection(server.port, initial=request, connection_window=1 << 30)
        try:
            done = lambda: all(s in conn.resets() or 1 in conn.kinds(s) for s in sids)  # noqa: E731
            assert conn.until(done, 10)
            assert conn.goaway is None
            seen: dict[bytes, int] = {}
            statuses = _statuses(conn)
            for sid, (path, _) in zip(sids, TABLE, strict=True):
                assert SECRET not in conn.body(sid), f"{path!r} leaked the secret"
                if sid in conn.resets():
                    assert conn.resets()[sid] == PROTOCOL_ERROR
                    seen[path] = RESET
                else:
                    seen[path] = statuses[sid]
            outcomes.append(seen)
        finally:
            conn.close()

    with attack_running(mount):
        served_during(server.port, "/hello.txt", b"hello\n")
    assert outcomes
    for seen in outcomes:
        wrong = {p[:40]: (seen[p], want) for p, want in TABLE if seen[p] != want}
        assert not wrong, f"(got, expected) by path: {wrong}"
    footprint.assert_bounded()


def test_hard_link_to_outside_is_served(server_factory: Callable[..., Any], tree: Path) -> None:
    """Documented, not a bug: the link is a name in ROOT for the same inode. Operators own
    ROOT; do not let untrusted users create links in it."""
    server, _ = start(server_factory, root=tree)
    assert fetch(server.port, "/hardlink.txt") == SECRET
