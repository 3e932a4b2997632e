"""Content coding: ``accept-encoding`` negotiation, and bodies compressed as the window opens.

Negotiation (RFC 9110 §12.5.3) picks zstd (the ``zstandard`` package) or gzip (zlib) by the
client's q-values, server preference zstd > gzip on ties, identity when the client prefers it
or the body is below the size threshold. Only compressible media types are negotiated at all
(text, JSON, NDJSON, CSV, JavaScript, XML, SVG, wasm; configurable); for anything else the
field is disregarded, as RFC 9110 §12.1 allows. When the client refuses identity
(``identity;q=0``, or ``*;q=0`` without an identity entry) and accepts none of our codings, the
answer is 406: the refusal is honoured rather than ignored.

Compression is pull-driven and bounded. A body compresses only when the scheduler offers it
window: it reads one chunk (64 KiB) from its source, compresses it, frames the output, and
reads again only once that output has left. Memory per compressed stream is at most one
input chunk and its output, plus a codec context while it compresses: zstd contexts are lent
by the worker's budget and pooled (compressors.ZstdContexts), gzip keeps one zlib stream per
response (about 320 KiB). A zstd context allocates 521 KiB at level 1 with our 64 KiB window
(``memory_size()``; 953 KiB with 128 KiB).
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
import zlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, NamedTuple

from h2stream.body.bodies import ProducerHandover
from h2stream.body.compressors import ZstdContexts
from h2stream.body.sources import CHUNK, Source
from h2stream.config import Config
from h2stream.core.frames import DATA_HEADER, FLAG_END_STREAM
from h2stream.core.framing import Body, FrameSink
from h2stream.core.stats import STATS

if TYPE_CHECKING:
    import zstandard


@functools.cache
def _empty_frame() -> bytes:
    """What an empty body compresses to: one frame without content (RFC 8878 §3.1.1).
    zstandard is imported at the first compressed response (README "Memory")."""
    import zstandard

    return zstandard.ZstdCompressor(level=1).compress(b"")


# gzip: a 32 KiB window with the gzip wrapper (wbits 16 + 15).
_GZIP_WBITS = 31

CODINGS = ("zstd", "gzip")

# The --compress-type default (config.py lists it, with the reason for each limit there).
DEFAULT_COMPRESSIBLE_TYPES: tuple[str, ...] = Config().compress_types

VARY = (b"vary", b"accept-encoding")
_IMPLICIT_IDENTITY_Q = 0.0005
_Q_VALUE = re.compile(r"^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$")
# Accept-Encoding values repeat across requests ("gzip, deflate, br, zstd"): parse each once.
_PARSED_MAX = 256


class Preference(NamedTuple):
    """What an ``accept-encoding`` value says about the codings we offer."""

    coding: str | None  # the best coding of ours the client accepts (q > 0), if any
    coding_q: float
    identity_q: float
    # Every offered coding with q > 0, best first (ties in server preference order).
    accepted: tuple[str, ...] = ()


def parse_accept_encoding(value: bytes | None, offered: Iterable[str] = CODINGS) -> Preference:
    """Rank our ``offered`` codings (in server preference order) by the client's q-values.

    No field at all means identity only: RFC 9110 would allow any coding, but no client that
    omits the field expects a compressed body. An empty field means identity only too.
    """
    if value is None:
        return Preference(None, 0.0, 1.0)
    explicit: dict[str, float] = {}
    for member in value.decode("latin-1").lower().split(","):
        name, _, params = member.partition(";")
        name = name.strip()
        if not name:
            continue
        q = 1.0
        for param in params.split(";"):
            key, eq, text = param.strip().partition("=")
            if eq and key.strip() == "q":
                text = text.strip()
                # An invalid weight makes the member ignored (-1).
                q = float(text) if _Q_VALUE.match(text) else -1.0
        if q < 0:
            continue
        if name == "x-gzip":
            name = "gzip"  # RFC 9110 §8.4.1.3: treat as gzip
        explicit[name] = q
    star = explicit.get("*")
    ranked: list[tuple[float, int, str]] = []
    for rank, coding in enumerate(offered):
        q = explicit.get(coding, star if star is not None else 0.0)
        if q > 0:
            ranked.append((-q, rank, coding))
    ranked.sort()
    # Identity not listed: acceptable (RFC 9110 §12.5.3) but preferred below any coding the
    # client did list, whatever its weight; the q grammar's smallest positive value is 0.001.
    identity_q = explicit.get("identity", star if star is not None else _IMPLICIT_IDENTITY_Q)
    if not ranked:
        return Preference(None, 0.0, identity_q)
    accepted = tuple(coding for _, _, coding in ranked)
    return Preference(accepted[0], -ranked[0][0], identity_q, accepted)


_Matcher = tuple[frozenset[str], tuple[str, ...], tuple[tuple[str, str], ...]]


def _type_matcher(patterns: Iterable[str]) -> _Matcher:
    """Split patterns into exact types, ``major/*`` prefixes and ``major/*+suffix`` pairs."""
    exact: set[str] = set()
    prefixes: list[str] = []
    suffixes: list[tuple[str, str]] = []
    for raw in patterns:
        pattern = raw.strip().lower()
        if pattern.endswith("/*"):
            prefixes.append(pattern[:-1])  # "text/"
        elif "/*" in pattern:
            major, _, suffix = pattern.partition("/*")
            suffixes.append((major + "/", suffix))  # ("application/", "+json")
        elif pattern:
            exact.add(pattern)
    return frozenset(exact), tuple(prefixes), tuple(suffixes)


class EncodingPolicy:
    """Which responses get compressed, with what, and the codec contexts to do it."""

    def __init__(
        self,
        *,
        types: Iterable[str] = DEFAULT_COMPRESSIBLE_TYPES,
        min_size: int = 1024,
        zstd_level: int = 1,
        gzip_level: int = 1,
        codings: Iterable[str] = CODINGS,
        zstd_contexts: int = 4,
        zstd: ZstdContexts | None = None,
    ) -> None:
        """``zstd``: the worker's contexts to borrow from; without it the policy makes its
        own, lending at most ``zstd_contexts``."""
        self.codings = tuple(c for c in CODINGS if c in set(codings))
        self.min_size = min_size
        self.zstd_level = zstd_level
        self.gzip_level = gzip_level
        self._exact, self._prefixes, self._suffixes = _type_matcher(types)
        self._types: dict[str | bytes, bool] = {}
        self._parsed: dict[bytes | None, Preference] = {}
        self.zstd = zstd if zstd is not None else ZstdContexts(zstd_contexts)
        self.zstd_budget = self.zstd.budget
        # Part of strong etags of compressed variants: a different level is different bytes.
        self.etag_suffix = {"zstd": f"-zstd{zstd_level}", "gzip": f"-gzip{gzip_level}"}

    @classmethod
    def from_config(cls, config: Config, zstd: ZstdContexts | None = None) -> EncodingPolicy | None:
        """The policy ``config`` asks for (None without compression); ``zstd``: the worker's
        contexts, else its own per ``--max-zstd-contexts``."""
        if not config.compression:
            return None
        return cls(
            types=config.compress_types,
            min_size=config.compress_min_size,
            zstd_level=config.zstd_level,
            gzip_level=config.gzip_level,
            zstd_contexts=config.max_zstd_contexts,
            zstd=zstd,
        )

    # -- decisions -----------------------------------------------------------------------

    def compressible(self, content_type: str | bytes) -> bool:
        """Whether responses of this media type are worth compressing (cached per value)."""
        known = self._types.get(content_type)
        if known is None:
            text = (
                content_type.decode("latin-1") if isinstance(content_type, bytes) else content_type
            )
            media = text.partition(";")[0].strip().lower()
            known = (
                media in self._exact
                or media.startswith(self._prefixes)
                or any(
                    media.startswith(major) and media.endswith(sfx) for major, sfx in self._suffixes
                )
            )
            if len(self._types) >= _PARSED_MAX:
                self._types.clear()
            self._types[content_type] = known
        return known

    def preference(self, accept_encoding: bytes | None) -> Preference:
        parsed = self._parsed.get(accept_encoding)
        if parsed is None:
            parsed = parse_accept_encoding(accept_encoding, self.codings)
            if len(self._parsed) >= _PARSED_MAX:
                self._parsed.clear()
            self._parsed[accept_encoding] = parsed
        return parsed

    def select(self, accept_encoding: bytes | None, size: int | None) -> str:
        """``"zstd"``, ``"gzip"``, ``"identity"``, or ``""`` when nothing is acceptable (406).

        ``size`` is the identity length when known; the threshold applies only then (a
        generated stream of unknown length is compressed) and only while identity is
        acceptable (a client that refuses identity gets a compressed body of any size).
        """
        coding, coding_q, identity_q, _ = self.preference(accept_encoding)
        if coding is None:
            return "identity" if identity_q > 0 else ""
        if identity_q <= 0:
            return coding
        if identity_q > coding_q or (size is not None and size < self.min_size):
            return "identity"
        return coding

    def refuses_identity(self, accept_encoding: bytes | None) -> bool:
        return self.preference(accept_encoding).identity_q <= 0

    # -- codecs --------------------------------------------------------------------------

    def zstd_context(self) -> zstandard.ZstdCompressor:
        return self.zstd.context(self.zstd_level)

    def zstd_context_done(self, cctx: zstandard.ZstdCompressor) -> None:
        self.zstd.context_done(self.zstd_level, cctx)

    def encoder(self, coding: str, size: int | None = None) -> Encoder:
        if coding == "zstd":
            return ZstdEncoder(self, size)
        if coding == "gzip":
            return GzipEncoder(self.gzip_level)
        raise ValueError(f"unknown coding {coding!r}")


class Encoder:
    """One stream's compressor: ``compress`` then ``flush`` (decodable so far) or ``finish``.

    A body calls ``acquire`` before it reads input to compress: False means "wait", and the
    callback given comes once the encoder may go on. Bytes from ``take_tail`` (the end of a
    frame a suspension closed) go out before any later output.
    """

    __slots__ = ()
    name = ""

    def acquire(self, on_grant: Callable[[], None]) -> bool:
        return True

    @property
    def waiting(self) -> bool:
        return False

    def take_tail(self) -> bytes:
        return b""

    def compress(self, data: bytes | memoryview) -> bytes:
        raise NotImplementedError

    def flush(self) -> bytes:
        raise NotImplementedError

    def finish(self) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        pass


class ZstdEncoder(Encoder):
    """zstd with a context lent by the worker's :class:`~h2stream.body.compressors.ContextBudget`.

    Streaming frames declare no content size, so a suspension may end one anywhere; a body
    whose whole known size comes in one piece is compressed in one call (its frame declares
    the size, which lets zstd shrink its tables) and never holds a slot between calls.
    """

    __slots__ = (
        "_cctx",
        "_framed",
        "_obj",
        "_on_grant",
        "_policy",
        "_sealed",
        "_size",
        "_tail",
        "_waiting",
        "last_used",
        "taken_at",
    )
    name = "zstd"

    def __init__(self, policy: EncodingPolicy, size: int | None) -> None:
        self._policy = policy
        self._size = -1 if size is None else size
        self._cctx: zstandard.ZstdCompressor | None = None
        self._obj: zstandard.ZstdCompressionObj | None = None
        self._tail = b""
        self._waiting = False
        # The whole body went in one compress() call: only finish() (empty) is left.
        self._sealed = False
        # Some frame has been started (so the output is not empty).
        self._framed = False
        self._on_grant: Callable[[], None] | None = None
        self.last_used = self.taken_at = 0.0

    # -- the budget's side (compressors.Holder) -----------------------------------------------

    def acquire(self, on_grant: Callable[[], None]) -> bool:
        if self._cctx is not None or self._sealed:
            return True
        if self._waiting:
            return False
        if self._policy.zstd_budget.take(self):
            self._cctx = self._policy.zstd_context()
            return True
        self._waiting = True
        self._on_grant = on_grant
        return False

    @property
    def waiting(self) -> bool:
        return self._waiting

    @property
    def holding(self) -> bool:
        return self._cctx is not None

    def granted(self) -> None:
        self._waiting = False
        self._cctx = self._policy.zstd_context()
        on_grant, self._on_grant = self._on_grant, None
        if on_grant is not None:
            on_grant()

    def suspend(self) -> None:
        if self._obj is not None:
            import zstandard

            self._tail += self._obj.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)
            self._obj = None
        self._release()

    def take_tail(self) -> bytes:
        tail, self._tail = self._tail, b""
        return tail

    def _release(self) -> None:
        cctx, self._cctx = self._cctx, None
        if cctx is not None:
            self._policy.zstd_context_done(cctx)
            self._policy.zstd_budget.give_back(self)

    # -- compressing ---------------------------------------------------------------------

    def compress(self, data: bytes | memoryview) -> bytes:
        self.last_used = time.monotonic()
        obj = self._obj
        if obj is None:
            assert self._cctx is not None and not self._sealed, "compress() without a context"
            if len(data) == self._size:
                # The whole body at once: one frame that declares its size, slot back now.
                out = self._cctx.compress(data)
                self._sealed = self._framed = True
                self._release()
                return out
            obj = self._obj = self._cctx.compressobj(size=-1)
            self._framed = True
        return obj.compress(data)

    def flush(self) -> bytes:
        self.last_used = time.monotonic()
        if self._obj is None:
            return b""
        import zstandard

        return self._obj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)

    def finish(self) -> bytes:
        obj, self._obj = self._obj, None
        if obj is not None:
            import zstandard

            out = obj.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)
        elif self._framed:
            out = b""  # every frame is complete already
        else:
            out = _empty_frame()  # an empty body is still one (empty) frame
        self._framed = True
        self._release()
        return out

    def close(self) -> None:
        self._obj = None
        if self._waiting:
            self._waiting = False
            self._on_grant = None
            self._policy.zstd_budget.cancel(self)
        self._release()


class GzipEncoder(Encoder):
    __slots__ = ("_obj",)
    name = "gzip"

    def __init__(self, level: int) -> None:
        self._obj = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)

    def compress(self, data: bytes | memoryview) -> bytes:
        return self._obj.compress(data)

    def flush(self) -> bytes:
        return self._obj.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._obj.flush(zlib.Z_FINISH)


def encoded_headers(
    headers: Iterable[tuple[bytes, bytes]], coding: str, etag_suffix: str | None = None
) -> list[tuple[bytes, bytes]]:
    """Response fields for the ``coding`` variant of a representation.

    The length is unknown until the end (so no content-length), ranges are offered on the
    identity representation only, and a strong etag gets the variant's suffix: RFC 9110
    §8.8.3 wants a different tag for a different encoding.
    """
    out: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name in (b"content-length", b"accept-ranges"):
            continue
        if name == b"etag" and etag_suffix is not None and value.endswith(b'"'):
            value = value[:-1] + etag_suffix.encode() + b'"'
        out.append((name, value))
    out.append((b"content-encoding", coding.encode()))
    out.append(VARY)
    return out


# --------------------------------------------------------------------------- bodies


class _EncodedBody(Body):
    """Frames compressed output held in ``_out`` (one compressor call's worth at a time)."""

    __slots__ = (
        "_encoder",
        "_ended",
        "_finished",
        "_out",
        "_pos",
        "_waker",
        "_zstd",
        "mode",
        "trailers",
    )
    wakes_itself = True  # it waits for a zstd context by itself (compressors.py)

    def __init__(self, encoder: Encoder) -> None:
        self._encoder = encoder
        self._waker: Callable[[], None] | None = None
        self._zstd = encoder.name == "zstd"
        # How the bytes leave, for logs and metrics: "zstd" or "gzip" (counted only there).
        self.mode = encoder.name
        self._out = memoryview(b"")
        self._pos = 0
        # The compressor has produced its last bytes (all in _out now).
        self._finished = False
        # Everything framed, END_STREAM included (or left to trailers).
        self._ended = False
        self.trailers: list[tuple[bytes, bytes]] | None = None

    @property
    def done(self) -> bool:
        return self._ended

    @property
    def ready(self) -> bool:
        return not self._encoder.waiting

    def set_waker(self, waker: Callable[[], None]) -> None:
        self._waker = waker

    def _wake(self) -> None:
        if self._waker is not None:
            self._waker()

    def _next_tail(self) -> bool:
        """Queue the end of a frame a suspension closed, if any (it precedes later output)."""
        tail = self._encoder.take_tail()
        if not tail:
            return False
        self._out = memoryview(tail)
        self._pos = 0
        return True

    def _frame(self, sink: FrameSink, stream_id: int, budget: int, max_frame: int) -> int:
        """Frame up to ``budget`` bytes of ``_out``; sets ``_ended`` at the end of the body."""
        out = self._out
        pos = self._pos
        size = len(out)
        end = min(size, pos + budget)
        write = sink.write
        pack = DATA_HEADER.pack
        end_flag = FLAG_END_STREAM if self._finished and self.trailers is None else 0
        while pos < end:
            n = min(max_frame, end - pos)
            write(pack(n << 8, end_flag if pos + n == size else 0, stream_id))
            write(out[pos : pos + n])
            pos += n
        sent = pos - self._pos
        self._pos = pos
        if pos >= size and self._finished:
            if size == 0 and end_flag:
                write(pack(0, end_flag, stream_id))  # nothing left to carry END_STREAM
            self._ended = True
        if sent:
            if self._zstd:
                STATS.body_bytes_zstd += sent
            else:
                STATS.body_bytes_gzip += sent
        return sent

    def close(self) -> None:
        self._out = memoryview(b"")
        self._encoder.close()


class CompressedBody(_EncodedBody):
    """A pull source (file span, memory, generator) compressed as the window opens."""

    __slots__ = ("_failed", "_source")

    def __init__(self, source: Source, encoder: Encoder) -> None:
        super().__init__(encoder)
        self._source = source
        self._failed = False

    @property
    def failed(self) -> bool:
        return self._failed

    def emit(self, sink: FrameSink, stream_id: int, allowed: int, max_frame: int) -> int:
        sent = 0
        encoder = self._encoder
        while not self._ended and sink.writable:
            if self._pos < len(self._out):
                if sent >= allowed:
                    break
                sent += self._frame(sink, stream_id, allowed - sent, max_frame)
                continue
            if self._finished:
                # Only an empty final output gets here: END_STREAM on an empty frame.
                sent += self._frame(sink, stream_id, 0, max_frame)
                break
            if sent >= allowed:
                break
            if self._next_tail():
                continue
            if not encoder.acquire(self._wake):
                break  # no zstd context free: _wake schedules this stream when one is
            # Read only now that the previous output has left: one chunk in flight at most.
            data = self._source.read(CHUNK)
            if data:
                self._out = memoryview(encoder.compress(data))
            elif self._source.failed:
                self._failed = True
                break
            else:
                self._out = memoryview(encoder.finish())
                self._finished = True
            self._pos = 0
        return sent

    def close(self) -> None:
        super().close()
        self._source.close()


class CompressedChunkBody(ProducerHandover, _EncodedBody):
    """Chunks handed over by an application producer, compressed as the window opens.

    Like :class:`~h2stream.body.bodies.ChunkBody`, :meth:`put` takes one chunk and a future that
    resolves once the chunk's compressed bytes have all been framed. Each chunk is flushed
    (a zstd block / zlib sync flush) when it has been consumed, so what a producer has sent
    is decodable by the client when its ``send`` returns: a log tail is not held back.
    """

    __slots__ = ("_drained", "_end", "_in_pos", "_input", "_waiter")

    def __init__(self, encoder: Encoder) -> None:
        super().__init__(encoder)
        self._input: memoryview | None = None
        self._in_pos = 0
        self._end = False
        self._drained = False
        self._waiter: asyncio.Future[None] | None = None

    @property
    def ready(self) -> bool:
        return self._input is not None and not self._encoder.waiting

    def put(
        self,
        data: bytes | bytearray | memoryview,
        waiter: asyncio.Future[None],
        end: bool,
        trailers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self._take(self._input is not None or self._finished, waiter, end, trailers)
        self._input = memoryview(data).cast("B")
        self._in_pos = 0

    def emit(self, sink: FrameSink, stream_id: int, allowed: int, max_frame: int) -> int:
        sent = 0
        encoder = self._encoder
        while self._input is not None and sink.writable:
            if self._pos < len(self._out):
                if sent >= allowed:
                    break
                sent += self._frame(sink, stream_id, allowed - sent, max_frame)
                if self._pos < len(self._out):
                    continue
            elif self._finished:
                sent += self._frame(sink, stream_id, 0, max_frame)
            if self._drained:
                # This chunk is compressed and every byte of it framed: the producer may go on.
                self._input = None
                self._drained = False
                self._resolve(None)
                break
            if sent >= allowed:
                break
            if self._next_tail():
                continue
            data = self._input
            piece = data[self._in_pos : self._in_pos + CHUNK]
            if piece and not encoder.acquire(self._wake):
                break  # no zstd context free: _wake schedules this stream when one is
            self._in_pos += len(piece)
            out = encoder.compress(piece) if piece else b""
            if self._in_pos >= len(data):
                out += encoder.finish() if self._end else encoder.flush()
                self._drained = True
                self._finished = self._end
            self._out = memoryview(out)
            self._pos = 0
        return sent

    def close(self) -> None:
        self._input = None
        super().close()
        self._resolve(ConnectionResetError("stream closed before the chunk was sent"))
