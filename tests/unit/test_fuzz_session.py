"""Fuzzing the protocol core: random and mutated frame sequences fed to a Session.

The session (with its flood limits and header-block caps, and the real directory handler on a
small tree) must never let an exception escape ``receive`` or ``pump``, must never hang (each
example is bounded by its input), and what it writes must stay well-framed HTTP/2. Three
sources of input, each bounded in examples so the module takes seconds:

- raw bytes behind a valid preface;
- sequences of frames of every type with arbitrary flags, stream ids and payloads;
- a valid client conversation (a real h2 client's bytes) with random mutations, delivered in
  random chunks while the sink randomly stops and resumes writing.

Any input that ever made an exception escape is kept in ``tests/fuzz_corpus/`` and replayed
by :func:`test_corpus_regressions`. A failing example prints its bytes as hex: save them
there (``<name>.hex``) with the fix.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import h2.config
import h2.connection
import h2.settings
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.frames import PREFACE, frame, parse_frames
from support.recording import RecordingSink

from h2stream.config import Config
from h2stream.core.session import Session
from h2stream.handlers.static import StaticFiles

CORPUS = Path(__file__).resolve().parent.parent / "fuzz_corpus"
FUZZ = settings(
    max_examples=int(os.environ.get("H2STREAM_FUZZ_EXAMPLES", "150")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def handler(tmp_path_factory: pytest.TempPathFactory) -> StaticFiles:
    root = tmp_path_factory.mktemp("fuzzroot")
    for name, size in (("empty", 0), ("one", 1), ("frame", 16384), ("big", 70000)):
        (root / name).write_bytes(os.urandom(size))
    (root / "dir").mkdir()
    (root / "dir" / "index.html").write_bytes(b"<p>index</p>")
    return StaticFiles(str(root))


def feed(handler: StaticFiles, chunks: list[bytes], pauses: list[bool] | None = None) -> bytes:
    """Run one connection's worth of input through a Session; exceptions escape to the test."""
    sink = RecordingSink()
    closed: list[bool] = []
    session = Session(Config(root="."), sink, handler, lambda: closed.append(True))
    session.start()
    for i, chunk in enumerate(chunks):
        if session.closed:
            break
        if pauses is not None:
            sink.writable = pauses[i % len(pauses)]
        session.receive(chunk)
        if not sink.writable:
            sink.writable = True
            session.pump()
    for _ in range(64):  # drain: bounded turns
        if session.closed or not session.pump():
            break
    session.connection_lost()
    out = bytes(sink.out)
    # Everything the session wrote splits into whole frames (a partial last frame is never
    # written: the framing of the connection is intact).
    parse_frames(out)
    return out


# -- raw bytes -------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(handler: StaticFiles, payload: bytes) -> None:
    feed(handler, [PREFACE + payload])


# -- arbitrary frames --------------------------------------------------------------------------


frames = st.builds(
    frame,
    st.one_of(st.integers(0, 9), st.integers(10, 255)),
    st.integers(0, 255),
    st.sampled_from([0, 1, 2, 3, 5, 7, 0x7FFFFFFF, 0x80000001]),
    st.one_of(
        st.binary(max_size=64),
        st.binary(min_size=4, max_size=4),  # the size of RST_STREAM / WINDOW_UPDATE bodies
        st.binary(min_size=8, max_size=8),  # PING
        st.binary(min_size=5, max_size=5),  # PRIORITY
        st.binary(min_size=6, max_size=36).filter(lambda b: len(b) % 6 == 0),  # SETTINGS
    ),
)


@FUZZ
@given(st.lists(frames, max_size=40), st.integers(1, 64))
def test_arbitrary_frames(handler: StaticFiles, sequence: list[bytes], cut: int) -> None:
    data = PREFACE + frame(4, 0, 0, b"") + b"".join(sequence)
    feed(handler, [data[i : i + cut * 7] for i in range(0, len(data), cut * 7)])


# -- a valid conversation, mutated -------------------------------------------------------------

ACTIONS = st.lists(
    st.one_of(
        st.tuples(
            st.just("get"), st.sampled_from(["/empty", "/one", "/frame", "/big", "/dir/", "/nope"])
        ),
        st.tuples(st.just("post"), st.integers(0, 40000)),
        st.tuples(st.just("window"), st.integers(1, 1 << 20)),
        st.tuples(st.just("reset"), st.integers(0, 5)),
        st.tuples(st.just("ping"), st.binary(min_size=8, max_size=8)),
        st.tuples(st.just("settings"), st.integers(0, 1 << 20)),
        st.tuples(st.just("priority"), st.integers(1, 9)),
        st.tuples(st.just("range"), st.integers(0, 80000)),
    ),
    max_size=25,
)


def conversation(actions: list[tuple[str, object]]) -> bytes:
    """What a real h2 client sends for ``actions`` (including its preface)."""
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    client.initiate_connection()
    streams: list[int] = []
    base = [(b":scheme", b"http"), (b":authority", b"localhost")]
    for kind, arg in actions:
        try:
            if kind in ("get", "range"):
                sid = client.get_next_available_stream_id()
                path = arg if kind == "get" else "/big"
                extra = [(b"range", b"bytes=%d-" % arg)] if kind == "range" else []
                fields = [(b":method", b"GET"), *base, (b":path", str(path).encode()), *extra]
                client.send_headers(sid, fields, end_stream=True)
                streams.append(sid)
            elif kind == "post":
                sid = client.get_next_available_stream_id()
                fields = [(b":method", b"POST"), *base, (b":path", b"/big")]
                client.send_headers(sid, fields)
                size = int(arg)  # type: ignore[call-overload]
                body = b"x" * min(size, client.local_flow_control_window(sid))
                client.send_data(sid, body, end_stream=True)
                streams.append(sid)
            elif kind == "window" and streams:
                client.increment_flow_control_window(int(arg), stream_id=None)  # type: ignore[call-overload]
            elif kind == "reset" and streams:
                client.reset_stream(streams[int(arg) % len(streams)])  # type: ignore[call-overload]
            elif kind == "ping":
                client.ping(arg)  # type: ignore[arg-type]
            elif kind == "settings":
                client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: arg})
            elif kind == "priority" and streams:
                client.prioritize(streams[-1], weight=int(arg) * 20)  # type: ignore[call-overload]
        except h2.exceptions.ProtocolError:
            pass  # the client itself refuses (e.g. a closed stream): skip the action
    return client.data_to_send()


MUTATIONS = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "delete", "duplicate", "truncate"]),
        st.integers(0, 1 << 16),
        st.integers(1, 64),
        st.integers(0, 255),
    ),
    max_size=6,
)


def mutate(data: bytes, mutations: list[tuple[str, int, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, at, size, byte in mutations:
        if not out:
            break
        # Keep the first 24 bytes (the preface) mostly intact: otherwise every case is the
        # same "invalid preface" error.
        pos = 24 + at % max(1, len(out) - 24) if len(out) > 24 else at % len(out)
        if kind == "flip" and pos < len(out):
            out[pos] ^= byte or 1
        elif kind == "insert":
            out[pos:pos] = bytes([byte]) * size
        elif kind == "delete":
            del out[pos : pos + size]
        elif kind == "duplicate":
            out[pos:pos] = out[pos : pos + size]
        elif kind == "truncate":
            del out[pos:]
    return bytes(out)


@FUZZ
@given(ACTIONS, MUTATIONS, st.integers(1, 4096), st.lists(st.booleans(), min_size=1, max_size=8))
def test_mutated_conversations(
    handler: StaticFiles,
    actions: list[tuple[str, object]],
    mutations: list[tuple[str, int, int, int]],
    cut: int,
    pauses: list[bool],
) -> None:
    data = mutate(conversation(actions), mutations)
    feed(handler, [data[i : i + cut] for i in range(0, len(data), cut)], pauses)


def test_unmutated_conversation_is_served(handler: StaticFiles) -> None:
    """The generator is worth something: an unmutated conversation gets real answers."""
    out = feed(handler, [conversation([("get", "/big"), ("window", 1 << 20), ("get", "/one")])])
    assert len(out) > 65535  # the first window of /big at least


# -- regressions -------------------------------------------------------------------------------


def _corpus() -> Iterator[Path]:
    return iter(sorted(CORPUS.glob("*.hex")))


@pytest.mark.parametrize("case", list(_corpus()), ids=lambda p: p.stem)
def test_corpus_regressions(handler: StaticFiles, case: Path) -> None:
    data = bytes.fromhex("".join(case.read_text().split()))
    for cut in (1, 7, 4096, len(data) or 1):
        feed(handler, [data[i : i + cut] for i in range(0, len(data), cut)])


# -- atheris (coverage-guided), outside the test run ----------------------------------------------


def _atheris_main() -> None:
    """``python tests/unit/test_fuzz_session.py [libFuzzer flags]``: coverage-guided fuzzing
    of the same core with atheris, seeded from the corpus, e.g. ``-max_total_time=300``.
    A crash is written by libFuzzer as ``crash-<sha1>``: add it to the corpus as hex."""
    import sys
    import tempfile

    import atheris

    root = Path(tempfile.mkdtemp(prefix="h2stream-fuzz-"))
    for name, size in (("empty", 0), ("one", 1), ("frame", 16384), ("big", 70000)):
        (root / name).write_bytes(os.urandom(size))
    handler = StaticFiles(str(root))
    seeds = Path(tempfile.mkdtemp(prefix="h2stream-seeds-"))
    for case in _corpus():
        (seeds / case.stem).write_bytes(bytes.fromhex("".join(case.read_text().split())))
    (seeds / "conversation").write_bytes(
        conversation([("get", "/big"), ("window", 1 << 20), ("reset", 0), ("get", "/one")])
    )

    def one_input(data: bytes) -> None:
        cut = 1 + (data[0] if data else 0)
        feed(handler, [data[i : i + cut] for i in range(0, len(data), cut)])

    atheris.instrument_all()
    atheris.Setup([sys.argv[0], *sys.argv[1:], str(seeds)], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    _atheris_main()
