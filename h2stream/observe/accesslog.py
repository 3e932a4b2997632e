"""The access log: one line per stream, written in batches.

A line is formatted in the ``on_stream_end`` observer (never on the per-frame path) from the
ended exchange alone (:class:`~h2stream.core.exchange.ExchangeRecord`) and appended to an
in-memory batch; the batch goes to the file in one ``os.write`` when it reaches
:data:`FLUSH_BYTES` or :data:`FLUSH_INTERVAL` seconds after its first line, and at close. So a
busy server makes a few writes a second, not one per request.

``combined`` is the Apache/nginx combined format followed by h2stream's own fields (one line,
wrapped here)::

    127.0.0.1 - - [07/Mar/2025:10:00:00 +0000] "GET /big.bin HTTP/2.0" 200 1048576 "-"
    "curl/7.88.1" h2c 1 0.012345 sendfile "-" - 4bf92f3577b34da6a3ce929d0e0e4736

after the user agent: transport (``h2c`` or ``h2``; ``http`` or ``https`` for HTTP/1.x), stream
id (HTTP/1.x: the request's number on its connection), duration in seconds, send mode,
the request's Range header, the RST_STREAM code if the stream was reset (``-`` otherwise) and
the request id. The byte count is what was actually framed for the body, not the
content-length, so an aborted download logs what it really got. Status ``0`` means the stream
ended before a response was sent. ``json`` writes the same fields as one JSON object per line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable

from h2stream.core.exchange import ExchangeRecord, ResetCode

log = logging.getLogger("h2stream.accesslog")

FLUSH_BYTES = 64 * 1024
FLUSH_INTERVAL = 0.5

# Printable ASCII except the quote and the backslash: what may go into a quoted field as is.
_PLAIN = bytes(c for c in range(0x20, 0x7F) if c not in b'"\\')
_ESCAPES = {c: f"\\x{c:02x}" for c in range(256) if c not in _PLAIN}
_ESCAPES[ord('"')] = '\\"'
_ESCAPES[ord("\\")] = "\\\\"


def escape(value: bytes) -> str:
    """A client-supplied value, safe inside a quoted field (nginx-style ``\\xHH`` escapes)."""
    if not value.translate(None, _PLAIN):
        return value.decode("ascii")
    return "".join(_ESCAPES.get(c) or chr(c) for c in value)


def _code_name(code: int | None) -> str | None:
    if code is None:
        return None
    try:
        return ResetCode(code).name
    except ValueError:
        return str(code)


def _protocol(record: ExchangeRecord) -> tuple[str, str]:
    """The request line's protocol and the transport column."""
    version = record.http_version
    if version == "2":
        return "HTTP/2.0", "h2" if record.tls else "h2c"
    return f"HTTP/{version}", "https" if record.tls else "http"


class _ClockCache:
    """The combined format's ``[10/Oct/2000:13:55:36 +0000]``, formatted once a second."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def get(self, when: float) -> str:
        second = int(when)
        if second != self._second:
            self._second = second
            self._value = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(second))
        return self._value


def _note(stream: ExchangeRecord) -> str:
    """The handler's note; an exchange whose protocol does not carry one yet has none."""
    return getattr(stream, "log_note", "")


def _request_fields(stream: ExchangeRecord) -> tuple[bytes, bytes, bytes, bytes]:
    """Referer, user agent, range and authority from the request headers (``b""`` if absent)."""
    referer = agent = range_ = authority = b""
    for name, value in stream.headers:
        if name == b"user-agent":
            agent = value
        elif name == b"referer":
            referer = value
        elif name == b"range":
            range_ = value
        elif name == b":authority":
            authority = value
    return referer, agent, range_, authority


class AccessLog:
    """Formats a line per stream and writes them in batches. Call it as the stream observer."""

    def __init__(self, path: str, fmt: str = "combined") -> None:
        self.path = path
        self.format_line: Callable[[ExchangeRecord], str] = (
            self._json if fmt == "json" else self._combined
        )
        self._fd = -1
        self._owned = False
        self._batch: list[str] = []
        self._pending = 0
        self._timer: asyncio.TimerHandle | None = None
        self._clock = _ClockCache()
        self._failed = False

    def open(self) -> None:
        if self.path == "-":
            self._fd, self._owned = 1, False
        else:
            self._fd = os.open(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
            )
            self._owned = True

    def reopen(self) -> None:
        """After log rotation moved the file away: write to a fresh one at ``path``."""
        self.flush()
        if self._owned:
            os.close(self._fd)
            self.open()

    def close(self) -> None:
        self.flush()
        if self._owned and self._fd >= 0:
            os.close(self._fd)
        self._fd = -1

    def __call__(self, stream: ExchangeRecord) -> None:
        line = self.format_line(stream)
        self._batch.append(line)
        self._pending += len(line)
        if self._pending >= FLUSH_BYTES:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self.flush)
            except RuntimeError:  # no loop (a session driven by hand): write now
                self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._batch:
            return
        data = "".join(self._batch).encode("utf-8", "backslashreplace")
        self._batch.clear()
        self._pending = 0
        if self._fd < 0:
            return
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            # A full disk must not take the server down; say so once.
            if not self._failed:
                self._failed = True
                log.error("access log %s: write failed, lines dropped: %s", self.path, exc)

    # -- formats ------------------------------------------------------------------------------

    def _combined(self, stream: ExchangeRecord) -> str:
        now = time.monotonic()
        note = _note(stream)
        referer, agent, range_, _ = _request_fields(stream)
        reset = _code_name(stream.reset_code)
        protocol, transport = _protocol(stream)
        return (
            f"{stream.peer} - - [{self._clock.get(time.time() - (now - stream.started))}] "
            f'"{escape(stream.method)} {escape(stream.path)} {protocol}" {stream.status} '
            f'{stream.bytes_sent} "{escape(referer) if referer else "-"}" '
            f'"{escape(agent) if agent else "-"}" {transport} '
            f"{stream.stream_id} {now - stream.started:.6f} {stream.mode or '-'} "
            f'"{escape(range_) if range_ else "-"}" {reset or "-"} {stream.request_id or "-"}'
            # The handler's note (gRPC: grpc-status=N), only on lines that have one.
            f"{' ' + note if note else ''}\n"
        )

    def _json(self, stream: ExchangeRecord) -> str:
        now = time.monotonic()
        referer, agent, range_, authority = _request_fields(stream)
        started = time.time() - (now - stream.started)
        protocol, transport = _protocol(stream)
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started))
            + f".{int(started % 1 * 1000):03d}Z",
            "remote_addr": stream.peer,
            "protocol": protocol,
            "transport": transport,
            "method": stream.method.decode("latin-1"),
            "path": stream.path.decode("utf-8", "backslashreplace"),
            "authority": authority.decode("utf-8", "backslashreplace"),
            "status": stream.status,
            "bytes_sent": stream.bytes_sent,
            "referer": referer.decode("utf-8", "backslashreplace") or None,
            "user_agent": agent.decode("utf-8", "backslashreplace") or None,
            "stream_id": stream.stream_id,
            "duration": round(now - stream.started, 6),
            "ttfb": round(stream.first_byte_at - stream.started, 6)
            if stream.first_byte_at
            else None,
            "mode": stream.mode or None,
            "range": range_.decode("latin-1") or None,
            "reset": _code_name(stream.reset_code),
            "reset_by": ("peer" if stream.reset_by_peer else "server")
            if stream.reset_code is not None
            else None,
            "request_id": stream.request_id or None,
        }
        note = _note(stream)
        if note:
            record["note"] = note
        return json.dumps(record, separators=(",", ":")) + "\n"
