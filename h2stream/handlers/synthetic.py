"""Built-in benchmark endpoints under ``/_h2stream/``, answered without a Task.

``GET /_h2stream/bytes/N``
    N bytes (suffixes K, M, G, T in powers of 1024; up to 1 PiB) framed from one preallocated
    1 MiB pattern shared by the process: byte ``p`` of the body is ``PATTERN[p % 1 MiB]``. On
    h2c the pattern lives in a memfd and frames leave by ``os.sendfile`` like file bodies;
    elsewhere frames are views of the same pages. Single byte ranges are honoured.
``POST /_h2stream/sink`` (or PUT)
    Reads and discards the body, returning window credit as each DATA frame arrives, and
    answers ``{"bytes": N, "seconds": S}``: upload benchmarking with ``h2load -d FILE``.
    Bodies over ``--max-request-body`` get 413 (up front when ``content-length`` says so).
``GET /_h2stream/ndjson?rows=N[&after=K]``
    A deterministic NDJSON table of rows ``id = K+1 .. N``, generated as the window opens and
    compressed when the client accepts it. Every row's byte offset is computable (the width of
    a row depends only on the number of digits of its id), so ``range: bytes=a-`` resumes at
    byte a by generating from the row that holds it, never from the first row. Compressed
    bodies are not byte-addressable: resume those with ``after=K``, the count of complete rows
    already received.

All three are switched off with ``--no-builtin-endpoints``.
"""

from __future__ import annotations

import json
import mmap
import os
import random
import time
from urllib.parse import parse_qsl

from h2stream.body.encoding import VARY, CompressedBody, EncodingPolicy, encoded_headers
from h2stream.body.sources import Source, SourceBody
from h2stream.config import Config, parse_size
from h2stream.core.exchange import Exchange, Handler, Headers
from h2stream.core.frames import DATA_HEADER, FLAG_END_STREAM
from h2stream.core.framing import Body, FrameSink
from h2stream.core.stats import STATS
from h2stream.handlers.files import parse_byte_range, satisfiable_span

PREFIX = b"/_h2stream/"
OCTET_STREAM = b"application/octet-stream"
NDJSON_TYPE = b"application/x-ndjson"

PATTERN_SIZE = 1 << 20
# The pattern is stored with its first 256 KiB repeated after it, so a frame of up to that
# size starting anywhere in the period is one contiguous slice (DATA frames we send are at
# most --max-send-frame-size, 256 KiB by default; larger ones are cut at this size).
_PATTERN_TAIL = 1 << 18
_SPAN = PATTERN_SIZE + _PATTERN_TAIL
MAX_BYTES = 1 << 50
# 10^11 rows is about 16 TB of NDJSON; ids then stay within 12 digits.
MAX_ROWS = 10**11
DEFAULT_ROWS = 1000


# ------------------------------------------------------------------------ bytes/N


class _Pattern:
    """The shared pattern: a memfd (for sendfile) and a read-only view of the same pages."""

    def __init__(self) -> None:
        data = random.Random(0x6832).randbytes(PATTERN_SIZE)
        data += data[:_PATTERN_TAIL]
        self.fd = -1
        self.view: memoryview
        memfd_create = getattr(os, "memfd_create", None)
        if memfd_create is not None:
            fd = memfd_create("h2stream-pattern", os.MFD_CLOEXEC)
            os.write(fd, data)
            self._map = mmap.mmap(fd, len(data), prot=mmap.PROT_READ)
            self.fd = fd
            self.view = memoryview(self._map)
        else:
            self.view = memoryview(data)


_PATTERN: _Pattern | None = None


def pattern() -> _Pattern:
    global _PATTERN
    if _PATTERN is None:
        _PATTERN = _Pattern()
    return _PATTERN


def pattern_bytes(offset: int, length: int) -> bytes:
    """Bytes ``offset .. offset+length`` of any ``bytes/N`` body (for tests and clients)."""
    view = pattern().view
    out = bytearray()
    while length > 0:
        start = offset % PATTERN_SIZE
        n = min(length, PATTERN_SIZE - start)
        out += view[start : start + n]
        offset += n
        length -= n
    return bytes(out)


class PatternBody(Body):
    """``remaining`` bytes of the repeating pattern from ``offset``: no Task, no copies.

    It rides the sink's two file paths, as file bodies do: on h2c each frame is a 9-byte header
    plus one ``sendfile`` of the memfd; otherwise a run of frames is one ``preadv`` of the memfd
    into the sink's reused buffer. The last frame goes by the copy path so it can carry
    END_STREAM. Nothing is allocated per frame beyond the header.
    """

    __slots__ = ("_fd", "_view", "mode", "offset", "remaining")

    def __init__(self, offset: int, length: int) -> None:
        shared = pattern()
        self._fd = shared.fd
        self._view = shared.view
        self.offset = offset % PATTERN_SIZE
        self.remaining = length
        self.mode = "copy"

    @property
    def done(self) -> bool:
        return self.remaining == 0

    def emit(self, sink: FrameSink, stream_id: int, allowed: int, max_frame: int) -> int:
        n = min(allowed, self.remaining)
        if n <= 0:
            return 0
        max_frame = min(max_frame, _PATTERN_TAIL)
        sent = 0
        if sink.use_sendfile and not sink.copy_small_frames and self._fd >= 0:
            # Zero-copy for every frame but the body's last, which carries END_STREAM.
            run = n - min(max_frame, n) if n == self.remaining else n
            while run > 0 and sink.writable:
                # A run never passes the end of the memfd (the period plus its tail).
                span = min(run, _SPAN - self.offset)
                done, _ = sink.send_file_frames(stream_id, self._fd, self.offset, span, max_frame)
                self.mode = "sendfile"
                self._advance(done)
                sent += done
                run -= done
                if done < span:
                    return sent  # the socket is full: resume_writing brings us back
        fd = self._fd
        while sent < n and sink.writable:
            span = min(n - sent, _SPAN - self.offset)
            end_stream = span == self.remaining
            if fd >= 0:
                # The sink's copy path: one preadv of the memfd into its reused frame buffer.
                sink.copy_file_frames(stream_id, fd, self.offset, span, max_frame, end_stream)
            else:
                self._frame_views(sink, stream_id, span, max_frame, end_stream)
            STATS.body_bytes_copy += span
            self._advance(span)
            sent += span
        return sent

    def _frame_views(
        self, sink: FrameSink, stream_id: int, count: int, max_frame: int, end_stream: bool
    ) -> None:
        """Without a memfd: frames as views of the in-memory pattern."""
        pack = DATA_HEADER.pack
        offset = self.offset
        stop = offset + count
        while offset < stop:
            size = min(max_frame, stop - offset)
            last = end_stream and offset + size == stop
            sink.write(pack(size << 8, FLAG_END_STREAM if last else 0, stream_id))
            sink.write(self._view[offset : offset + size])
            offset += size

    def _advance(self, n: int) -> None:
        self.remaining -= n
        offset = self.offset + n
        self.offset = offset % PATTERN_SIZE if offset >= PATTERN_SIZE else offset


# ------------------------------------------------------------------------ ndjson

_BLOCK = 1000  # rows per template block: ids h*1000 .. h*1000+999 share the prefix h
_VARIANTS = 8
_MARK = "\x00"  # stands for the block prefix h in a template; never part of a row
_ROW = (
    '{{"id":{id},"name":"user-{id}","email":"user-{id}@example.com","city":"{city}",'
    '"score":{score},"status":"{status}","token":"{token}","ts":"{ts}"}}\n'
)
# Every field but the id has a fixed width, so a row's width depends only on the id's digits.
_CITIES = ("Berlin", "Dublin", "Lisbon", "London", "Madrid", "Monaco", "Nantes", "Sydney")
_STATUSES = ("open", "done", "lost", "fail", "hold", "sent")
_SAMPLE = {"city": "Berlin", "score": "100.00", "status": "open", "token": "0" * 16}
_FIXED = len(_ROW.format(id="", ts="2024-01-01T00:00:00Z", **_SAMPLE))
_ID_COUNT = 3  # the id appears three times per row


def _row(rng: random.Random, ident: str) -> str:
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    hour, minute, second = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
    ts = f"2024-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}Z"
    return _ROW.format(
        id=ident,
        city=rng.choice(_CITIES),
        score=f"{rng.randint(100, 999)}.{rng.randint(0, 99):02d}",
        status=rng.choice(_STATUSES),
        token=f"{rng.getrandbits(64):016x}",
        ts=ts,
    )


class _Templates:
    """Block 0 (ids 1..999) as bytes, and ``_VARIANTS`` templates for every later block."""

    def __init__(self) -> None:
        rng = random.Random(0x4E444A)
        self.block0 = "".join(_row(rng, str(i)) for i in range(1, _BLOCK)).encode()
        self.variants = [
            "".join(_row(rng, f"{_MARK}{i:03d}") for i in range(_BLOCK)).encode()
            for _ in range(_VARIANTS)
        ]
        # Width of a template row: the mark stands for the prefix, plus three digits.
        self.row_width = _FIXED + _ID_COUNT * 4


_TEMPLATES: _Templates | None = None


def _templates() -> _Templates:
    global _TEMPLATES
    if _TEMPLATES is None:
        _TEMPLATES = _Templates()
    return _TEMPLATES


def row_width(ident: int) -> int:
    return _FIXED + _ID_COUNT * len(str(ident))


def row_offset(ident: int) -> int:
    """Byte offset of row ``ident`` (ids start at 1) in the table; ``row_offset(N+1)`` is the
    size of an N-row table."""
    count = ident - 1  # rows before this one
    digits_total = 0
    low = 1
    digits = 1
    while low <= count:
        high = min(count, low * 10 - 1)
        digits_total += (high - low + 1) * digits
        low *= 10
        digits += 1
    return count * _FIXED + _ID_COUNT * digits_total


def row_at(offset: int) -> tuple[int, int]:
    """The row holding byte ``offset`` and the offset within it."""
    low = 1
    digits = 1
    while True:
        start = row_offset(low)
        width = _FIXED + _ID_COUNT * digits
        end = start + (low * 9) * width  # rows low .. 10*low-1
        if offset < end:
            index, into = divmod(offset - start, width)
            return low + index, into
        low *= 10
        digits += 1


def ndjson_rows(first: int, last: int) -> bytes:
    """Rows ``first .. last-1`` as bytes (all within one block of 1000 ids)."""
    templates = _templates()
    block = first // _BLOCK
    if block == 0:
        return templates.block0[row_offset(first) : row_offset(last)]
    width = templates.row_width
    variant = ((block * 2654435761) & 0xFFFFFFFF) >> 29  # a cheap, fixed shuffle of blocks
    part = templates.variants[variant][(first % _BLOCK) * width : ((last - 1) % _BLOCK + 1) * width]
    return part.replace(b"\x00", str(block).encode())


class NdjsonSource(Source):
    """Table bytes ``start .. end`` (absolute offsets), generated about 64 KiB at a time."""

    __slots__ = ("_chunk", "_end", "_last_row", "_next_row", "_pos", "_skip", "remaining")

    def __init__(self, start: int, end: int, last_row: int) -> None:
        first, self._skip = row_at(start) if start < end else (last_row + 1, 0)
        self._next_row = first
        self._last_row = last_row
        self._end = end
        self._chunk = memoryview(b"")
        self._pos = 0
        self.remaining: int = end - start

    @property
    def at_end(self) -> bool:
        return self.remaining <= 0

    def read(self, n: int) -> memoryview:
        if self._pos >= len(self._chunk):
            if self.remaining <= 0:
                return memoryview(b"")
            self._generate()
        pos = self._pos
        stop = min(len(self._chunk), pos + n, pos + self.remaining)
        self._pos = stop
        self.remaining -= stop - pos
        return self._chunk[pos:stop]

    def _generate(self) -> None:
        first = self._next_row
        rows = max(1, (64 * 1024) // row_width(first))
        last = min(first + rows, (first // _BLOCK + 1) * _BLOCK, self._last_row + 1)
        self._next_row = last
        data = memoryview(ndjson_rows(first, last))
        if self._skip:
            data = data[self._skip :]
            self._skip = 0
        self._chunk = data
        self._pos = 0


# ------------------------------------------------------------------------ sink


class _SinkReader:
    """Counts and discards a request body; credit goes back as each chunk arrives."""

    __slots__ = ("_done", "_exchange", "_limit", "_started", "received")

    def __init__(self, exchange: Exchange, limit: int, started: float) -> None:
        self._exchange = exchange
        self._limit = limit
        self._started = started
        self._done = False
        self.received = 0

    def feed(self, data: bytes, flow_controlled_length: int) -> None:
        # Consumed on arrival, whatever happens next: the credit always goes back.
        self._exchange.consumed(flow_controlled_length)
        if self._done:
            return
        self.received += len(data)
        if self.received > self._limit:
            self._done = True
            _too_large(self._exchange)

    def end(self, error: BaseException | None = None) -> None:
        if self._done:
            return
        self._done = True
        if error is None:
            _sink_answer(self._exchange, self.received, self._started)


def _sink_answer(exchange: Exchange, received: int, started: float) -> None:
    seconds = time.monotonic() - started
    body = json.dumps({"bytes": received, "seconds": round(seconds, 6)}).encode() + b"\n"
    exchange.respond_bytes(200, body, content_type=b"application/json")


def _too_large(exchange: Exchange) -> None:
    """413, and the client is told to stop sending (HTTP/2: RST_STREAM(NO_ERROR), RFC 9113
    section 8.1)."""
    STATS.request_body_too_large += 1
    exchange.answer_and_stop(413, b"payload too large\n")


def declared_length(headers: Headers) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


# ------------------------------------------------------------------------ dispatch


def _header(headers: Headers, wanted: bytes) -> bytes | None:
    for name, value in headers:
        if name == wanted:
            return value
    return None


class BuiltinEndpoints:
    """The ``/_h2stream/`` handler (an exchange handler: answers synchronously, no Task)."""

    def __init__(self, config: Config, policy: EncodingPolicy | None) -> None:
        self.max_request_body = config.max_request_body
        self.policy = policy

    def __call__(self, exchange: Exchange) -> None:
        raw = exchange.path[len(PREFIX) :]
        name, _, query = raw.partition(b"?")
        method = exchange.method
        if name == b"sink":
            if method not in (b"POST", b"PUT"):
                _refuse(exchange, 405, b"POST, PUT")
                return
            self._sink(exchange)
            return
        if method not in (b"GET", b"HEAD"):
            _refuse(exchange, 405, b"GET, HEAD")
            return
        try:
            if name.startswith(b"bytes/"):
                self._bytes(exchange, name[6:].decode("latin-1"))
            elif name == b"ndjson":
                self._ndjson(exchange, query.decode("latin-1"))
            else:
                exchange.respond_bytes(404, b"not found\n", head=method == b"HEAD")
        except ValueError as exc:
            exchange.respond_bytes(400, f"{exc}\n".encode(), head=method == b"HEAD")

    # -- bytes/N -------------------------------------------------------------------------

    def _bytes(self, exchange: Exchange, n: str) -> None:
        size = parse_size(n)
        if size > MAX_BYTES:
            raise ValueError(f"at most {MAX_BYTES} bytes")
        etag = b'"bytes-%x"' % size
        fields = [(b"content-type", OCTET_STREAM), (b"etag", etag), (b"accept-ranges", b"bytes")]
        status, offset, length = _range(exchange.headers, size, etag, fields)
        head = exchange.method == b"HEAD"
        body = None if head or not length else PatternBody(offset, length)
        exchange.respond(status, fields, body)

    # -- ndjson --------------------------------------------------------------------------

    def _ndjson(self, exchange: Exchange, query: str) -> None:
        headers = exchange.headers
        params = dict(parse_qsl(query))
        rows = _count(params.get("rows"), DEFAULT_ROWS, "rows")
        after = min(_count(params.get("after"), 0, "after"), rows)
        base = row_offset(after + 1)
        size = row_offset(rows + 1) - base
        etag = b'"ndjson1-%d-%d"' % (rows, after)
        fields = [(b"content-type", NDJSON_TYPE), (b"etag", etag)]
        head = exchange.method == b"HEAD"
        policy = self.policy
        if policy is not None:
            accept = _header(headers, b"accept-encoding")
            coding = policy.select(accept, size)
            if coding == "":
                exchange.respond_bytes(406, b"not acceptable\n", extra=[VARY], head=head)
                return
            honour_range = not policy.refuses_identity(accept)
            if coding != "identity" and not (honour_range and _header(headers, b"range")):
                fields = encoded_headers(fields, coding, policy.etag_suffix[coding])
                body = None
                if not head:
                    source = NdjsonSource(base, base + size, rows)
                    body = CompressedBody(source, policy.encoder(coding, size))
                exchange.respond(200, fields, body)
                return
            fields.append(VARY)
        fields.append((b"accept-ranges", b"bytes"))
        status, offset, length = _range(headers, size, etag, fields)
        source_body = None
        if not head and length:
            source_body = SourceBody(NdjsonSource(base + offset, base + offset + length, rows))
        exchange.respond(status, fields, source_body)

    # -- sink ----------------------------------------------------------------------------

    def _sink(self, exchange: Exchange) -> None:
        # The handler runs as the request's headers arrive: the upload's clock starts here.
        started = time.monotonic()
        declared = declared_length(exchange.headers)
        if declared is not None and declared > self.max_request_body:
            _too_large(exchange)
            return
        if exchange.request_ended:
            _sink_answer(exchange, 0, started)
            return
        exchange.read_body(_SinkReader(exchange, self.max_request_body, started))


def _refuse(exchange: Exchange, status: int, allow: bytes) -> None:
    # Any body is drained (credit straight back) rather than reset: see App.__call__.
    exchange.respond_bytes(status, b"method not allowed\n", extra=[(b"allow", allow)])


def _count(text: str | None, default: int, name: str) -> int:
    if text is None:
        return default
    if not text.isdigit() or len(text) > 12 or int(text) > MAX_ROWS:
        raise ValueError(f"{name} must be a whole number up to {MAX_ROWS}")
    return int(text)


def _range(headers: Headers, size: int, etag: bytes, fields: Headers) -> tuple[int, int, int]:
    """Status, offset and length for a body of ``size`` bytes; appends the length fields.

    A single ``bytes=`` range (``a-b``, ``a-`` or ``-n``) gets 206 (416 when it selects
    nothing); ``if-range`` must then carry our etag. Anything else gets the whole body.
    """
    spec = _header(headers, b"range")
    if spec is not None:
        if_range = _header(headers, b"if-range")
        parsed = parse_byte_range(spec) if if_range is None or if_range == etag else None
        if parsed is not None:
            span = satisfiable_span(parsed, size)
            if span is None:
                fields.append((b"content-range", b"bytes */%d" % size))
                fields.append((b"content-length", b"0"))
                return 416, 0, 0
            first, last = span
            fields.append((b"content-range", b"bytes %d-%d/%d" % (first, last, size)))
            fields.append((b"content-length", b"%d" % (last - first + 1)))
            return 206, first, last - first + 1
    fields.append((b"content-length", b"%d" % size))
    return 200, 0, size


def with_builtins(builtins: BuiltinEndpoints, fallback: Handler | None) -> Handler:
    """An exchange handler: ``/_h2stream/`` paths to ``builtins``, the rest to ``fallback``.

    One ``startswith`` per request is all the default server pays for the endpoints.
    """

    def handler(exchange: Exchange) -> None:
        if exchange.path.startswith(PREFIX):
            builtins(exchange)
        elif fallback is not None:
            fallback(exchange)
        else:
            exchange.respond_bytes(404, b"not found\n", head=exchange.method == b"HEAD")

    return handler
