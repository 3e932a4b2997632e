"""One look at the disk per read from the network: a small file kept in memory is revalidated
by one ``lstat`` for all the requests that arrived together, not one per request, and still
by a new ``lstat`` at the next read (core/reads.py). Counted on a real server process with
strace, driven by a raw h2 client that sends its requests in one write.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.clients import RawH2Client, Response
from support.servers import ServerProcess
from support.strace import Strace

REQUESTS_PER_WRITE = 60


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ServerProcess, Path]]:
    root = tmp_path / "root"
    root.mkdir()
    (root / "small.bin").write_bytes(b"a" * 1000)
    server = ServerProcess(root, "--small-file-cache", "1M", "--max-concurrent-streams", "100")
    yield server, root
    server.stop()


class Lstats(Strace):
    """The server's lstat calls (newfstatat on newer libcs)."""

    def __init__(self, pid: int, log: Path) -> None:
        super().__init__(pid, log, "lstat,newfstatat,statx")

    def calls_naming(self, name: str) -> int:
        return sum(name in line for line in self.lines())


def _one_write_of_requests(client: RawH2Client, path: str, count: int) -> list[int]:
    """``count`` GETs of ``path`` sent in a single write (one read for the server)."""
    ids = []
    for _ in range(count):
        stream_id = client.conn.get_next_available_stream_id()
        client.conn.send_headers(
            stream_id,
            [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"localhost"),
             (b":path", path.encode())],
            end_stream=True,
        )  # fmt: skip
        client.responses[stream_id] = Response(stream_id)
        ids.append(stream_id)
    client.flush()
    return ids


def test_requests_read_together_share_one_lstat_and_the_next_read_looks_again(
    served: tuple[ServerProcess, Path], tmp_path: Path
) -> None:
    server, root = served
    client = RawH2Client(server.port, auto_ack=True)
    try:
        # Kept in memory: the path proven, then the file read (the second open keeps it).
        for _ in range(3):
            warm = client.request("/small.bin")
            assert client.until(lambda s=warm: client.responses[s].ended)  # type: ignore[misc]
        lstats = Lstats(server.pid, tmp_path / "strace.log")
        try:
            # Wait until strace sees calls: requests for a missing file make the server stat.
            deadline = time.monotonic() + 20
            while lstats.calls_naming("missing.bin") == 0:
                assert time.monotonic() < deadline, "strace never attached"
                probe = client.request("/missing.bin")
                assert client.until(lambda s=probe: client.responses[s].ended)  # type: ignore[misc]
                time.sleep(0.05)
            ids = _one_write_of_requests(client, "/small.bin", REQUESTS_PER_WRITE)
            assert client.until(lambda: all(client.responses[i].ended for i in ids))
            batched = lstats.calls_naming("small.bin")
            # The file changes; the next read (one request) looks again and sees it.
            (root / "small.bin").write_bytes(b"b" * 1000)
            after = client.request("/small.bin")
            assert client.until(lambda: client.responses[after].ended)
            looked_again = lstats.calls_naming("small.bin") - batched
        finally:
            lstats.stop()
        assert all(bytes(client.responses[i].body) == b"a" * 1000 for i in ids)
        assert bytes(client.responses[after].body) == b"b" * 1000
        # One read of 60 requests: one lstat (a few if the kernel split the write); one per
        # request (60) is what this saves.
        assert 1 <= batched <= 4, f"{batched} lstat calls for {REQUESTS_PER_WRITE} requests"
        assert looked_again >= 1
    finally:
        client.close()
