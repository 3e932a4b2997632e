"""The worker's copy buffers: solo runs' 1 MiB buffers are bounded per worker.

A lone download sends 1 MiB runs only while the worker has a large buffer to spare; a
connection whose transport keeps one (a slow client) holds it, so without the bound many slow
clients with one download each would hold 1 MiB apiece.
"""

from __future__ import annotations

from h2stream.io.sink import _COPY_BUF, _LARGE_COPY_BUF, SOLO_RUN, CopyBuffers


def test_large_buffers_are_bounded_and_reused() -> None:
    pool = CopyBuffers()
    assert pool.large_available()
    first = pool.take(SOLO_RUN + 9 * 64)
    second = pool.take(SOLO_RUN)
    assert len(first) == len(second) == _LARGE_COPY_BUF
    assert not pool.large_available()  # both in transports: solo runs shrink meanwhile
    pool.give_back(first)
    assert pool.large_available()
    assert pool.take(SOLO_RUN) is first  # reused, not made again
    pool.forget(second)  # left to a closed transport: it never comes back
    assert pool.large_available()
    pool.give_back(first)
    third = pool.take(SOLO_RUN)
    assert third is first
    pool.give_back(third)
    # Never more than MAX_LARGE kept or out, whatever comes back.
    extra = [pool.take(SOLO_RUN) for _ in range(CopyBuffers.MAX_LARGE + 1)]
    for buf in extra:
        pool.give_back(buf)
    assert len(pool._free_large) <= CopyBuffers.MAX_LARGE
    pool.release_idle()
    assert pool.large_available() and not pool._free_large


def test_small_runs_use_small_buffers() -> None:
    pool = CopyBuffers()
    small = pool.take(64 * 1024)
    assert len(small) == _COPY_BUF
    pool.give_back(small)
    assert pool.take(200 * 1024) is small
    assert pool.large_available()
