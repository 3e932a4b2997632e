"""Small files served from memory (``--small-file-cache``): every answer is the file as it is
on disk at that moment, over HTTP/2 and HTTP/1.1, with the same validators, ranges and HEAD
as a file read from disk; nothing outside ROOT becomes reachable through the cache.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.clients import request
from support.curl import curl_status
from support.servers import InProcessServer, loopback_config

from h2stream.core.stats import STATS
from h2stream.handlers.static import StaticFiles


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[InProcessServer, Path]]:
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.bin").write_bytes(b"A" * 1000)
    config = loopback_config(root, small_file_cache=1 << 20)
    server = InProcessServer(config, StaticFiles(str(root), small_files=config.small_file_cache))
    yield server, root
    server.stop()


def _body(server: InProcessServer, path: str = "/a.bin") -> bytes:
    response = request(server.port, path)
    assert response.status == 200, response.status
    return bytes(response.body)


def _served_from_memory(server: InProcessServer, path: str = "/a.bin") -> None:
    """Request until the file is kept in memory (the second open within the path cache's
    time-to-live keeps it)."""
    for _ in range(3):
        _body(server, path)
    handler = server.server.handler
    kept = handler.root.content.held  # type: ignore[attr-defined]
    assert kept > 0, "nothing kept in memory: the cache under test is not in use"


def test_a_file_rewritten_in_place_is_served_new_at_once(
    served: tuple[InProcessServer, Path],
) -> None:
    server, root = served
    _served_from_memory(server)
    target = root / "a.bin"
    before = target.stat()
    # Same size, same mtime afterwards: only the content (and ctime) differs.
    target.write_bytes(b"B" * 1000)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert _body(server) == b"B" * 1000


def test_a_file_replaced_by_rename_is_served_new_at_once(
    served: tuple[InProcessServer, Path],
) -> None:
    server, root = served
    _served_from_memory(server)
    replacement = root / ".tmp"
    replacement.write_bytes(b"C" * 10)
    replacement.replace(root / "a.bin")
    assert _body(server) == b"C" * 10


def test_a_symlink_swapped_in_to_outside_root_is_not_followed(
    served: tuple[InProcessServer, Path], tmp_path: Path
) -> None:
    server, root = served
    _served_from_memory(server)
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"S" * 1000)
    target = root / "a.bin"
    target.unlink()
    target.symlink_to(secret)
    response = request(server.port, "/a.bin")
    assert response.status == 404
    assert b"S" * 10 not in bytes(response.body)


def test_validators_ranges_and_head_match_the_file(
    served: tuple[InProcessServer, Path],
) -> None:
    server, _ = served
    _served_from_memory(server)
    first = request(server.port, "/a.bin")
    etag = first.headers[b"etag"].decode()
    assert first.headers[b"content-length"] == b"1000"
    assert request(server.port, "/a.bin", headers=[("if-none-match", etag)]).status == 304
    ranged = request(server.port, "/a.bin", headers=[("range", "bytes=10-19")])
    assert ranged.status == 206 and bytes(ranged.body) == b"A" * 10
    assert ranged.headers[b"content-range"] == b"bytes 10-19/1000"
    assert request(server.port, "/a.bin", headers=[("range", "bytes=5000-")]).status == 416
    head = request(server.port, "/a.bin", method="HEAD")
    assert head.status == 200 and head.body == b"" and head.headers[b"content-length"] == b"1000"


def test_http1_gets_the_same_bytes(served: tuple[InProcessServer, Path]) -> None:
    server, root = served
    _served_from_memory(server)
    code, body, status = curl_status(f"http://127.0.0.1:{server.port}/a.bin")
    assert code == 0 and status == "200 1.1" and body == b"A" * 1000
    (root / "a.bin").write_bytes(b"D" * 999)
    code, body, status = curl_status(f"http://127.0.0.1:{server.port}/a.bin")
    assert body == b"D" * 999


def test_large_files_are_not_kept(served: tuple[InProcessServer, Path]) -> None:
    server, root = served
    (root / "big.bin").write_bytes(os.urandom(100_000))
    copied = STATS.body_bytes_copy + STATS.body_bytes_sendfile
    for _ in range(3):
        assert _body(server, "/big.bin") == (root / "big.bin").read_bytes()
    assert STATS.body_bytes_copy + STATS.body_bytes_sendfile - copied >= 300_000
    assert server.server.handler.root.content.held == 0  # type: ignore[attr-defined]
