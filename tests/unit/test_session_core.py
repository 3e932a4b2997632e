"""The Session's scheduler and lifecycle, driven by a real h2 client with crafted frames.

No sockets: a client's bytes go into ``Session.receive`` and what the session writes lands in a
recording sink, parsed back into frames with hyperframe (independently of h2, so frames after
a GOAWAY can still be read). What is checked is who gets DATA when: which WINDOW_UPDATE or
SETTINGS change wakes which stream, what a reset or a paused sink stops, and how the
connection ends.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import pytest
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
)
from support.frames import split_frames
from support.recording import Closer, RecordingSink

from h2stream.body.bodies import FileBody
from h2stream.config import Config
from h2stream.core.exchange import Exchange, Handler
from h2stream.core.frames import data_header
from h2stream.core.framing import BytesBody
from h2stream.core.session import Session

MIB = 1 << 20
WINDOW = 65535
SC = h2.settings.SettingCodes
ERR = h2.errors.ErrorCodes
PROC_FD = "/proc/self/fd"


class FileHandler:
    """Answers every GET with the named file under ``root`` as a FileBody."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.closers: dict[int, Closer] = {}

    def __call__(self, exchange: Exchange) -> None:
        fd = os.open(self.root / exchange.path.decode().lstrip("/"), os.O_RDONLY)
        closer = self.closers[exchange.stream_id] = Closer(fd)
        size = os.fstat(fd).st_size
        fields = [(b"content-length", b"%d" % size)]
        exchange.respond(200, fields, FileBody(fd, 0, size, closer))


class Peer:
    """An h2 client wired to a Session through the recording sink."""

    def __init__(
        self,
        root: Path,
        config: Config | None = None,
        client_settings: dict[int, int] | None = None,
        connection_window: int | None = None,
        handler: Handler | None = None,
    ) -> None:
        self.sink = RecordingSink()
        self.handler = FileHandler(root)
        self.close_calls = 0
        self.session = Session(
            config or Config(), self.sink, handler or self.handler, self._on_close
        )
        self.client = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        if client_settings:
            self.client.local_settings = h2.settings.Settings(
                client=True, initial_values=client_settings
            )
        # The client's h2 checks the session's frames until the session says GOAWAY; after
        # that h2 refuses any frame, so the rest is only parsed.
        self.client_live = True
        self.frames: list[Frame] = []
        self.session.start()
        self.client.initiate_connection()
        if connection_window is not None:
            self.client.increment_flow_control_window(connection_window - WINDOW)
        self.send()

    def _on_close(self) -> None:
        self.close_calls += 1

    def send(self, data: bytes | None = None) -> list[Frame]:
        """Client bytes (by default whatever the client has queued) into the session, as the
        protocol layer would, then the session's output back to the client. Returns the frames
        the session wrote meanwhile."""
        new: list[Frame] = []
        data = self.client.data_to_send() if data is None else data
        while data:
            more = self.session.receive(data)
            # The I/O layer runs further turns while the sink can take them.
            for _ in range(10_000):
                if not (more and self.sink.writable):
                    break
                more = self.session.pump()
            new += self.collect()
            data = self.client.data_to_send() if self.client_live else b""
        return new

    def collect(self) -> list[Frame]:
        """Parse what the session wrote since the last call (and show it to the client)."""
        new = []
        for frame, raw in split_frames(self.sink.take()):
            new.append(frame)
            if isinstance(frame, GoAwayFrame):
                self.client_live = False
            if self.client_live:
                self.client.receive_data(raw)  # a ProtocolError here fails the test
        self.frames += new
        return new

    def pump(self) -> list[Frame]:
        self.session.pump()
        return self.collect()

    def request(self, path: str) -> int:
        stream_id = self.client.get_next_available_stream_id()
        headers = [
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":authority", b"localhost"),
            (b":path", path.encode()),
        ]
        self.client.send_headers(stream_id, headers, end_stream=True)
        return stream_id

    def window_update(self, stream_id: int | None, increment: int) -> list[Frame]:
        self.client.increment_flow_control_window(increment, stream_id=stream_id)
        return self.send()


def data_by_stream(frames: list[Frame]) -> Counter[int]:
    counts: Counter[int] = Counter()
    for frame in frames:
        if isinstance(frame, DataFrame):
            counts[frame.stream_id] += len(frame.data)
    return counts


def payload(frames: list[Frame], stream_id: int) -> bytes:
    return b"".join(
        bytes(f.data) for f in frames if isinstance(f, DataFrame) and f.stream_id == stream_id
    )


def ended(frames: list[Frame], stream_id: int) -> bool:
    return any(
        isinstance(f, DataFrame | HeadersFrame)
        and f.stream_id == stream_id
        and "END_STREAM" in f.flags
        for f in frames
    )


def open_fds() -> int:
    return len(os.listdir(PROC_FD))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "big.bin").write_bytes(os.urandom(MIB))
    (tmp_path / "small.txt").write_bytes(b"small\n")
    return tmp_path


# -- waking the right producers ------------------------------------------------------------


def test_stream_window_update_wakes_only_that_stream(root: Path) -> None:
    peer = Peer(root, connection_window=16 * MIB)
    a = peer.request("/big.bin")
    b = peer.request("/big.bin")
    frames = peer.send()
    assert data_by_stream(frames) == {a: WINDOW, b: WINDOW}
    streams = peer.session.streams
    assert streams[a].blocked and streams[b].blocked

    assert data_by_stream(peer.window_update(a, 1000)) == {a: 1000}
    assert streams[a].blocked and streams[b].blocked
    assert data_by_stream(peer.window_update(b, 500)) == {b: 500}
    # A WINDOW_UPDATE for a stream that has nothing to do with the parked ones wakes nobody.
    assert data_by_stream(peer.window_update(None, 1000)) == {}


def test_connection_window_update_resumes_streams_parked_on_it(root: Path) -> None:
    # Stream windows of 1 MiB: only the connection window (65,535) binds. A small turn makes
    # the scheduler's sharing visible.
    peer = Peer(
        root,
        config=Config(stream_turn_bytes=16384),
        client_settings={SC.INITIAL_WINDOW_SIZE: MIB},
    )
    a = peer.request("/big.bin")
    b = peer.request("/big.bin")
    assert sum(data_by_stream(peer.send()).values()) == WINDOW
    # Parked on the connection, not on their own windows.
    assert not peer.session.streams[a].blocked and not peer.session.streams[b].blocked

    # Stream credit while the connection window is empty: nothing, and no double queueing.
    assert data_by_stream(peer.window_update(a, 10)) == {}
    assert data_by_stream(peer.window_update(a, 10)) == {}

    sent = data_by_stream(peer.window_update(None, 100_000))
    assert sum(sent.values()) == 100_000
    assert sent[a] > 0 and sent[b] > 0, f"one connection update should feed both: {sent}"
    assert sum(data_by_stream(peer.window_update(None, 1)).values()) == 1


def test_settings_initial_window_wakes_blocked_streams_by_the_delta(root: Path) -> None:
    peer = Peer(root, connection_window=16 * MIB)
    a = peer.request("/big.bin")
    b = peer.request("/big.bin")
    assert data_by_stream(peer.send()) == {a: WINDOW, b: WINDOW}

    peer.client.update_settings({SC.INITIAL_WINDOW_SIZE: WINDOW + 1000})
    assert data_by_stream(peer.send()) == {a: 1000, b: 1000}

    # Lower it: both windows go negative (-5000); updates must first bring them above zero.
    peer.client.update_settings({SC.INITIAL_WINDOW_SIZE: WINDOW - 4000})
    assert data_by_stream(peer.send()) == {}
    assert peer.session.streams[a].h2_stream.outbound_flow_control_window == -5000
    assert data_by_stream(peer.window_update(a, 5000)) == {}
    assert data_by_stream(peer.window_update(a, 1)) == {a: 1}
    assert data_by_stream(peer.window_update(b, 5001)) == {b: 1}


# -- stopping producers --------------------------------------------------------------------


@pytest.mark.parametrize("stalled_by", ["window", "sink"])
def test_rst_stream_mid_body_stops_frames_and_closes_the_fd(root: Path, stalled_by: str) -> None:
    fds_before = open_fds()
    if stalled_by == "window":
        peer = Peer(root, connection_window=16 * MIB)
    else:
        peer = Peer(
            root,
            client_settings={SC.INITIAL_WINDOW_SIZE: 16 * MIB},
            connection_window=16 * MIB,
        )
        # The socket "fills" a few frames into the body.
        peer.sink.pause_after(4)
    a = peer.request("/big.bin")
    first = data_by_stream(peer.send())[a]
    assert 0 < first < MIB
    assert open_fds() == fds_before + 1
    closer = peer.handler.closers[a]
    assert not closer.closed

    peer.client.reset_stream(a, ERR.CANCEL)
    peer.send()
    assert closer.closed, "the body's fd must close with the stream"
    assert open_fds() == fds_before
    assert a not in peer.session.streams

    # Whatever could have resumed it now sends nothing for it.
    peer.sink.writable = True
    later = peer.pump() + peer.window_update(None, MIB)
    assert data_by_stream(later)[a] == 0
    # The connection goes on.
    c = peer.request("/small.txt")
    frames = peer.send()
    assert payload(frames, c) == b"small\n" and ended(frames, c)
    assert peer.close_calls == 0


def test_unwritable_sink_gets_no_data_frames(root: Path) -> None:
    peer = Peer(root, connection_window=16 * MIB)
    peer.sink.writable = False
    a = peer.request("/big.bin")
    frames = peer.send()
    assert any(isinstance(f, HeadersFrame) and f.stream_id == a for f in frames)
    assert data_by_stream(frames) == {}
    assert data_by_stream(peer.pump()) == {}, "pump() must respect the sink, not just receive()"

    peer.sink.writable = True
    assert data_by_stream(peer.pump()) == {a: WINDOW}


def test_sink_filling_mid_turn_stops_then_resumes_exactly(root: Path) -> None:
    # Zero-copy for 16 KiB frames too, so that each DATA frame is a write of its own.
    peer = Peer(root, Config(zero_copy_min_frame=0), connection_window=16 * MIB)
    peer.sink.pause_after(3)  # HEADERS, then two DATA frames
    a = peer.request("/big.bin")
    first = data_by_stream(peer.send())[a]
    assert 0 < first < WINDOW
    assert not peer.sink.writable
    assert data_by_stream(peer.pump()) == {}
    peer.sink.writable = True  # resume_writing
    assert data_by_stream(peer.pump())[a] == WINDOW - first
    body = payload(peer.frames, a)
    assert body == (root / "big.bin").read_bytes()[:WINDOW]


# -- ending the connection -----------------------------------------------------------------

# Fed after a valid preface and SETTINGS: name -> (bytes, the GOAWAY error code RFC 9113 asks).
GARBAGE = {
    # WINDOW_UPDATE with a zero increment on the connection (RFC 9113 6.9).
    "window-update-zero": (b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00", 1),
    # DATA on stream 0 (RFC 9113 6.1).
    "data-on-stream-0": (b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x", 1),
    # HEADERS on an even (server-initiated) stream id (RFC 9113 5.1.1).
    "headers-even-stream": (b"\x00\x00\x01\x01\x05\x00\x00\x00\x02\x82", 1),
    # SETTINGS whose length is not a multiple of 6 (RFC 9113 6.5).
    "settings-bad-length": (b"\x00\x00\x05\x04\x00\x00\x00\x00\x00" + bytes(5), 6),
    # A frame longer than our SETTINGS_MAX_FRAME_SIZE (RFC 9113 4.2).
    "frame-too-large": (b"\x00\x40\x01\x00\x00\x00\x00\x00\x01" + bytes(0x4001), 6),
    # A field block that cannot be decoded (RFC 9113 4.3: COMPRESSION_ERROR).
    "bad-hpack": (b"\x00\x00\x02\x01\x05\x00\x00\x00\x01\xff\xff", 9),
}


@pytest.mark.parametrize("name", list(GARBAGE))
def test_protocol_error_ends_in_goaway_and_on_close(root: Path, name: str) -> None:
    garbage, code = GARBAGE[name]
    peer = Peer(root)
    assert peer.close_calls == 0
    frames = peer.send(garbage)
    goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
    assert len(goaways) == 1 and frames[-1] is goaways[0], "GOAWAY must be the last frame"
    assert goaways[0].error_code == code, f"{name}: GOAWAY code {goaways[0].error_code}"
    assert peer.close_calls == 1
    assert peer.session.closed


def test_shutdown_lets_in_flight_streams_finish_and_refuses_new_ones(root: Path) -> None:
    expected = (root / "big.bin").read_bytes()
    peer = Peer(root, connection_window=16 * MIB)
    a = peer.request("/big.bin")
    b = peer.request("/big.bin")
    assert data_by_stream(peer.send()) == {a: WINDOW, b: WINDOW}

    peer.session.shutdown()
    frames = peer.collect()
    assert len(frames) == 1 and isinstance(frames[0], GoAwayFrame)
    assert frames[0].error_code == ERR.NO_ERROR
    assert frames[0].last_stream_id == b
    assert peer.close_calls == 0, "in-flight streams keep the connection open"

    # A request the client sent before it read the GOAWAY: refused, so it may retry elsewhere.
    c = peer.request("/small.txt")
    frames = peer.send()
    resets = [f for f in frames if isinstance(f, RstStreamFrame) and f.stream_id == c]
    assert [r.error_code for r in resets] == [ERR.REFUSED_STREAM]
    assert not any(isinstance(f, HeadersFrame | DataFrame) and f.stream_id == c for f in frames)

    # The streams in flight still complete, with every byte and END_STREAM.
    peer.window_update(a, MIB)
    assert ended(peer.frames, a) and not ended(peer.frames, b)
    assert peer.close_calls == 0
    peer.window_update(b, MIB)
    for stream_id in (a, b):
        assert payload(peer.frames, stream_id) == expected
        assert ended(peer.frames, stream_id)
    assert peer.close_calls == 1, "the last stream's end closes the connection"
    assert not any(isinstance(f, RstStreamFrame) and f.stream_id in (a, b) for f in peer.frames)


def test_shutdown_with_nothing_in_flight_closes_at_once(root: Path) -> None:
    peer = Peer(root)
    peer.session.shutdown()
    frames = peer.collect()
    assert [type(f) for f in frames] == [GoAwayFrame]
    assert frames[0].last_stream_id == 0 and frames[0].error_code == ERR.NO_ERROR
    assert peer.close_calls == 1


# -- stopping an upload --------------------------------------------------------------------


class Stopper:
    """Answers every request at once with answer_and_stop(413), noting what it saw."""

    def __init__(self) -> None:
        self.request_ended: list[bool] = []

    def __call__(self, exchange: Exchange) -> None:
        self.request_ended.append(exchange.request_ended)
        exchange.answer_and_stop(413, b"too large\n")


POST = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"x"), (b":path", b"/u")]


def test_answer_and_stop_resets_an_upload_still_arriving(root: Path) -> None:
    stopper = Stopper()
    peer = Peer(root, handler=stopper)
    peer.client.send_headers(1, POST, end_stream=False)
    frames = [f for f in peer.send() if f.stream_id == 1]
    # Headers-only (END_STREAM on HEADERS), then RST_STREAM(NO_ERROR): the client stops.
    assert [type(f) for f in frames] == [HeadersFrame, RstStreamFrame]
    assert "END_STREAM" in frames[0].flags and frames[1].error_code == ERR.NO_ERROR
    assert stopper.request_ended == [False]


def test_answer_and_stop_after_the_upload_ended_in_the_same_read(root: Path) -> None:
    # The body and its END_STREAM arrive with the headers: h2 has seen the end while the
    # handler runs on the first event, so the answer is a plain response, never a reset.
    stopper = Stopper()
    peer = Peer(root, handler=stopper)
    peer.client.send_headers(1, POST, end_stream=False)
    peer.client.send_data(1, b"abc", end_stream=True)
    frames = [f for f in peer.send() if f.stream_id == 1]
    assert [type(f) for f in frames] == [HeadersFrame, DataFrame]
    assert payload(frames, 1) == b"too large\n" and ended(frames, 1)
    assert stopper.request_ended == [False]  # its END_STREAM event was still to come


# -- trailers ---------------------------------------------------------------------------


class TrailedBody(BytesBody):
    """A body whose end is told by trailers (as a gRPC reply's): no END_STREAM on its DATA."""

    __slots__ = ("trailers",)

    def __init__(self, data: bytes, trailers: list[tuple[bytes, bytes]]) -> None:
        super().__init__(data + b"!")  # the last byte is never framed: no END_STREAM
        self.trailers = trailers

    @property
    def done(self) -> bool:
        return self._pos >= len(self._view) - 1

    def emit(self, sink: Any, stream_id: int, allowed: int, max_frame: int) -> int:
        view = self._view
        n = min(allowed, len(view) - 1 - self._pos, max_frame)
        sink.write(data_header(n, stream_id) + bytes(view[self._pos : self._pos + n]))
        self._pos += n
        return n


@pytest.mark.parametrize("message", [b"", b"x" * 20_000])
def test_trailers_leave_h2s_state_as_its_send_headers(root: Path, message: bytes) -> None:
    """The session's trailers (its own HPACK block; h2's send_headers for a block larger than
    a frame) end the stream in the state h2's send_headers leaves."""
    trailers = [(b"grpc-status", b"0")] + ([(b"grpc-message", message)] if message else [])
    streams: list[Any] = []

    def handler(exchange: Exchange) -> None:
        streams.append(exchange.h2_stream)  # type: ignore[attr-defined]
        exchange.respond(200, [(b"content-type", b"application/grpc")], TrailedBody(b"m", trailers))

    peer = Peer(root, handler=handler)
    peer.client.send_headers(1, POST, end_stream=False)
    peer.client.send_data(1, b"abc", end_stream=True)
    received: list[Any] = []
    original = peer.client.receive_data

    def watch(data: bytes) -> list[Any]:
        events = original(data)
        received.extend(events)
        return events

    peer.client.receive_data = watch  # type: ignore[method-assign]
    frames = peer.send()
    got = [e for e in received if isinstance(e, h2.events.TrailersReceived)]
    assert len(got) == 1 and got[0].headers == trailers and got[0].stream_ended is not None
    assert payload(frames, 1) == b"m"
    # The reference: h2 answering the same request with its own send_headers for trailers.
    ref = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding=None)
    )
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    client.initiate_connection()
    ref.initiate_connection()
    ref.receive_data(client.data_to_send())
    client.send_headers(1, POST, end_stream=False)
    client.send_data(1, b"abc", end_stream=True)
    ref.receive_data(client.data_to_send())
    ref.send_headers(1, [(b":status", b"200")])
    ref.send_data(1, b"m")
    ref.send_headers(1, trailers, end_stream=True)
    ours, theirs = streams[0].state_machine, ref.streams[1].state_machine
    for name in ("state", "headers_sent", "trailers_sent", "stream_closed_by"):
        assert getattr(ours, name) == getattr(theirs, name), name


def _runs(frames: list[Frame]) -> list[tuple[int, int]]:
    """(stream, bytes) of each run: consecutive DATA frames of one stream."""
    runs: list[tuple[int, int]] = []
    for frame in frames:
        if isinstance(frame, DataFrame) and frame.data:
            if runs and runs[-1][0] == frame.stream_id:
                runs[-1] = (frame.stream_id, runs[-1][1] + len(frame.data))
            else:
                runs.append((frame.stream_id, len(frame.data)))
    return runs


TURN = 65536


def _two_stream_peer(root: Path) -> Peer:
    """Stream and connection windows far larger than two 1 MiB bodies; the turn 64 KiB."""
    return Peer(
        root,
        config=Config(stream_turn_bytes=TURN),
        client_settings={SC.INITIAL_WINDOW_SIZE: 16 * MIB},
        connection_window=16 * MIB,
    )


def test_runs_with_company_grow_while_the_sink_keeps_up(root: Path) -> None:
    """Two 1 MiB bodies, windows far larger: runs start at the turn and double while every
    write is taken whole (a sink that never pauses), up to the run cap; the bytes exact."""
    peer = _two_stream_peer(root)
    a = peer.request("/big.bin")
    b = peer.request("/big.bin")
    frames = peer.send()
    expected = (root / "big.bin").read_bytes()
    assert payload(frames, a) == expected and payload(frames, b) == expected
    sizes = [size for _, size in _runs(frames)]
    assert sizes[0] == TURN, sizes
    assert sizes[1] == 2 * TURN and sizes[2] == 4 * TURN, sizes
    assert max(sizes) <= peer.sink.solo_run
    # Fewer runs than the turn alone would make (32).
    assert len(sizes) < 2 * MIB // TURN // 2, sizes


def test_runs_with_company_stay_at_the_turn_while_the_sink_is_backlogged(root: Path) -> None:
    """A sink that pauses after every write (a slow client): every run with company is the
    fairness turn, so a stream never waits behind more than one turn of another."""
    peer = _two_stream_peer(root)
    peer.sink.pause_every = 1
    a = peer.request("/big.bin")
    b = peer.request("/big.bin")
    frames = peer.send()
    for _ in range(100):  # the transport drains: resume_writing, another turn
        peer.sink.writable = True
        peer.session.pump()
        frames += peer.collect()
    expected = (root / "big.bin").read_bytes()
    assert payload(frames, a) == expected and payload(frames, b) == expected
    runs = _runs(frames)
    shared = [size for stream, size in runs if stream == a][: len(runs) // 2 - 1]
    assert shared and max(shared) <= TURN, runs


def test_runs_never_take_more_than_an_equal_share_of_scarce_credit(root: Path) -> None:
    """Ten 1 MiB bodies and 1 MiB of connection credit: runs would grow past an equal share
    (the sink keeps up), but each takes at most that share, so all ten get some of it."""
    peer = Peer(
        root,
        config=Config(stream_turn_bytes=TURN),
        client_settings={SC.INITIAL_WINDOW_SIZE: 16 * MIB},
    )
    sids = [peer.request("/big.bin") for _ in range(10)]
    peer.send()
    peer.client.increment_flow_control_window(MIB)
    got = data_by_stream(peer.send())
    assert sum(got.values()) == MIB
    assert all(got[sid] > 0 for sid in sids), got
