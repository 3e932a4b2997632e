"""Helpers for the application, compression, upload and built-in endpoint tests.

``AppServer`` is the real server on a thread of the test process (like conftest's
InProcessServer) with an :class:`h2stream.handlers.app.App` composed by the CLI's own
``build_handler``, as ``h2stream serve ROOT --app`` composes it: built-in endpoints in front,
the app, the directory behind. Handlers run on the
server's loop; tests talk to them through ``threading`` primitives and read ``STATS``.

``UploadClient`` is RawH2Client plus a request body sender that sends only what the windows
allow and processes the server's frames as it goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import h2.events
from h2client import RawH2Client

from h2stream.config import Config, parse_bind
from h2stream.handlers.app import App
from h2stream.handlers.build import build_handler
from h2stream.runtime.server import Server, new_event_loop


class AppServer:
    """An in-process server running ``app`` (and ROOT, and the built-in endpoints)."""

    def __init__(self, root: Path, app: App | None, **changes: Any) -> None:
        config = Config(root=str(root), binds=(parse_bind("127.0.0.1:0"),), graceful_timeout=2.0)
        self.config = config.replace(**changes)
        self.app = app
        self.loop = new_event_loop("auto")
        self.server = Server(self.config, build_handler(self.config, app, serve_root=True))
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.call(self.server.start(announce=lambda line: None))
        scheme, host, port = self.server.addresses[0]
        self.url = f"{scheme}://{host}:{port}"
        self.port = port

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def soon(self, fn: Any, *args: Any) -> None:
        """Run ``fn(*args)`` on the server's loop (e.g. ``event.set`` of an asyncio.Event)."""
        self.loop.call_soon_threadsafe(fn, *args)

    def tasks(self) -> int:
        """Handler tasks still running (read on the loop, where the set changes)."""
        assert self.app is not None
        app = self.app

        async def count() -> int:
            return len(app.tasks)

        return int(self.call(count()))

    def wait_no_tasks(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.tasks() == 0:
                return True
            time.sleep(0.02)
        return self.tasks() == 0

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.call(self.server.drain(), timeout=self.config.graceful_timeout + 10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class UploadClient(RawH2Client):
    """RawH2Client that can stream a request body under the server's windows."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_ack", True)
        super().__init__(*args, **kwargs)
        self.trailers: dict[int, dict[bytes, bytes]] = {}
        self.sent: dict[int, int] = {}

    def _on_event(self, event: Any) -> None:
        if isinstance(event, h2.events.TrailersReceived):
            self.trailers[event.stream_id] = dict(event.headers)
        super()._on_event(event)

    def window(self, stream_id: int) -> int:
        try:
            return int(self.conn.local_flow_control_window(stream_id))
        except Exception:  # the stream is closed (reset by the server)
            return 0

    def send_some(self, stream_id: int, data: memoryview, end: bool) -> int:
        """Send as much of ``data`` as the windows allow now; returns bytes sent."""
        sent = 0
        while sent < len(data):
            window = self.window(stream_id)
            if window <= 0:
                break
            n = min(window, self.conn.max_outbound_frame_size, len(data) - sent)
            last = end and sent + n == len(data)
            self.conn.send_data(stream_id, bytes(data[sent : sent + n]), end_stream=last)
            sent += n
        self.flush()
        self.sent[stream_id] = self.sent.get(stream_id, 0) + sent
        return sent

    def upload(
        self, stream_id: int, body: bytes, *, end: bool = True, timeout: float = 30.0
    ) -> int:
        """Send ``body`` as the server's credit allows (reading its frames meanwhile).

        Returns the bytes sent: all of them, unless the stream was reset or the deadline hit.
        """
        view = memoryview(body)
        pos = 0
        deadline = time.monotonic() + timeout
        response = self.responses[stream_id]
        while pos < len(view) and time.monotonic() < deadline and not self.closed:
            if response.reset_code is not None:
                break
            pos += self.send_some(stream_id, view[pos:], end)
            if pos < len(view):
                self.receive_once(0.2)
        if end and not body:
            self.conn.end_stream(stream_id)
            self.flush()
        return pos


def wait_for(condition: Any, timeout: float = 10.0, step: float = 0.02) -> bool:
    """Poll ``condition`` until true or the deadline (bounded, never a bare sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())
