"""The plain-HTTP/1.1 listener of ``--metrics-bind``: ``/metrics``, ``/healthz``, ``/readyz``.

Kept apart from the HTTP/2 listeners on purpose: Prometheus and load balancers speak
HTTP/1.1, and a scrape must work while the data port is saturated or draining. It is a tiny
responder, not a web server: GET and HEAD of three paths, keep-alive, no request bodies. Every
read and write has a deadline and the number of open connections is capped, so garbage or a
slow client costs one small task for a few seconds at most.

A health probe must get through whatever other clients do (a load balancer takes out a node
whose /healthz does not answer). So a full listener makes room instead of refusing: a new
connection evicts the one that has waited longest (for its request head, or for its peer to
read), and no probe's fresh connection is ever the longest waiting. Nothing else queues: an
answer, a scrape's too, is made at once when its request head is complete.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import CollectorRegistry

from h2stream.config import Bind
from h2stream.observe.metrics import render

log = logging.getLogger("h2stream.metrics")

MAX_HEAD = 8192  # bytes of request line and headers
MAX_CONNECTIONS = 64  # past this, the connection waiting longest makes room
# A new connection's first request head must arrive within this (probes and scrapers send it
# at once); between requests a keep-alive connection may idle longer, for the next scrape.
HEAD_TIMEOUT = 5.0
KEEPALIVE_TIMEOUT = 20.0
WRITE_TIMEOUT = 5.0
MAX_REQUESTS = 1000  # per connection, then close: bounds what one client can pin

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_TEXT = "text/plain; charset=utf-8"


class _BadRequest(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@dataclass(slots=True)
class _Client:
    """One open connection: what evicting it needs, and since when it has been waiting."""

    task: asyncio.Task[None]
    writer: asyncio.StreamWriter
    waiting_since: float


class MetricsServer:
    """Serves one registry and two health answers; ``ready`` says whether we accept traffic."""

    def __init__(self, bind: Bind, registry: CollectorRegistry, ready: Callable[[], bool]) -> None:
        self.bind = bind
        self.registry = registry
        self.ready = ready
        self._server: asyncio.Server | None = None
        self._clients: dict[asyncio.Task[None], _Client] = {}
        self.address: tuple[str, int] | None = None

    async def start(self) -> str:
        """Listen; return the base URL (``http://host:port``)."""
        self._server = await asyncio.start_server(
            self._serve, self.bind.host, self.bind.port, reuse_address=True, limit=MAX_HEAD
        )
        host, port = self._server.sockets[0].getsockname()[:2]
        self.address = (host, port)
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        tasks = list(self._clients)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)

    def _make_room(self) -> None:
        """Close the connection that has waited longest (a slow or idle client, never one
        whose request just arrived) so that a new one is served."""
        stalest = min(self._clients.values(), key=lambda client: client.waiting_since)
        del self._clients[stalest.task]
        stalest.writer.transport.abort()
        stalest.task.cancel()
        idle = time.monotonic() - stalest.waiting_since
        log.debug("metrics listener full: closed a connection waiting for %.1f s", idle)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - start_server always runs us in a task
            writer.transport.abort()
            return
        if len(self._clients) >= MAX_CONNECTIONS:
            self._make_room()
        client = _Client(task, writer, time.monotonic())
        self._clients[task] = client
        clean = False
        try:
            timeout = HEAD_TIMEOUT
            for _ in range(MAX_REQUESTS):
                if not await self._one_request(reader, writer, client, timeout):
                    break
                timeout = KEEPALIVE_TIMEOUT
            clean = True
        except (TimeoutError, ConnectionError):
            pass  # slow or vanished client
        except asyncio.CancelledError:
            pass  # evicted to make room, or the listener is closing
        except Exception:
            log.exception("metrics listener: internal error")
        finally:
            self._clients.pop(task, None)
            # After a clean answer everything is flushed (drain was awaited); otherwise the
            # client may never read what is buffered, so drop it.
            if clean:
                writer.close()
            else:
                writer.transport.abort()

    async def _one_request(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: _Client,
        timeout: float,
    ) -> bool:
        """Answer one request; False when the connection should close."""
        client.waiting_since = time.monotonic()
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                await self._send(writer, 400, b"bad request\n", keep=False)
            return False
        except asyncio.LimitOverrunError:
            await self._send(writer, 431, b"request head too large\n", keep=False)
            return False
        try:
            method, path, keep = _parse_head(head)
        except _BadRequest as exc:
            await self._send(writer, exc.status, b"bad request\n", keep=False)
            return False
        status, body, content_type = self._answer(method, path)
        client.waiting_since = time.monotonic()
        await self._send(writer, status, body, keep, content_type, head_only=method == "HEAD")
        return keep

    def _answer(self, method: str, path: str) -> tuple[int, bytes, str]:
        if method not in ("GET", "HEAD"):
            return 405, b"method not allowed\n", _TEXT
        path = path.split("?", 1)[0]
        if path == "/metrics":
            try:
                return 200, render(self.registry), CONTENT_TYPE_LATEST
            except Exception:
                log.exception("metrics collection failed")
                return 500, b"collection failed\n", _TEXT
        if path == "/healthz":
            return 200, b"ok\n", _TEXT
        if path == "/readyz":
            if self.ready():
                return 200, b"ready\n", _TEXT
            return 503, b"draining\n", _TEXT
        return 404, b"not found: try /metrics, /healthz or /readyz\n", _TEXT

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        keep: bool,
        content_type: str = _TEXT,
        head_only: bool = False,
    ) -> None:
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\n"
            f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
        ).encode("latin-1")
        writer.write(head if head_only else head + body)
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)


def _parse_head(head: bytes) -> tuple[str, str, bool]:
    """Method, target and keep-alive of a request head; _BadRequest on anything odd."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise _BadRequest(400) from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[1].startswith("/") or not parts[2].startswith("HTTP/1."):
        raise _BadRequest(400)
    method, target, version = parts
    if not method.isalpha() or not method.isupper():
        raise _BadRequest(400)
    keep = version == "HTTP/1.1"
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise _BadRequest(400)
        lowered = name.lower()
        value = value.strip().lower()
        if lowered == "connection":
            if "close" in value:
                keep = False
            elif "keep-alive" in value:
                keep = True
        elif lowered == "transfer-encoding" or (lowered == "content-length" and value != "0"):
            # No endpoint takes a body; reading one would only be a way to pin us.
            raise _BadRequest(400)
    return method, target, keep
