"""The ASGI lifespan protocol: startup before the server listens, shutdown during the drain.

The app's lifespan coroutine runs as one Task for the server's life. Its ``state`` dict is the
one every request scope gets a shallow copy of.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from h2stream.handlers.asgi.types import ASGI_INFO, AsgiApp, Message

log = logging.getLogger("h2stream.asgi")


class LifespanFailure(Exception):
    """Startup failed (``lifespan.startup.failed``, or the app raised with ``--lifespan on``)."""


class Lifespan:
    """Drives one app's lifespan. ``mode``: ``auto`` (an app that raises before answering
    startup does not speak lifespan: carry on), ``on`` (any failure is fatal), ``off``."""

    def __init__(self, app: AsgiApp, mode: str, timeout: float) -> None:
        self._app = app
        self._mode = mode
        self._timeout = timeout
        self.state: dict[str, Any] = {}
        # Whether the app answered startup: only then is shutdown sent.
        self.running = False
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._answer: asyncio.Future[Message] | None = None
        self._task: asyncio.Task[None] | None = None

    async def _receive(self) -> Message:
        return await self._inbox.get()

    async def _send(self, message: Message) -> None:
        answer = self._answer
        if answer is not None and not answer.done():
            answer.set_result(message)

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": dict(ASGI_INFO), "state": self.state}
        try:
            await self._app(scope, self._receive, self._send)
        except BaseException as exc:
            answer = self._answer
            if answer is not None and not answer.done():
                answer.set_exception(exc)
            elif self.running and not isinstance(exc, asyncio.CancelledError):
                # (A failed startup was already reported through its answer.)
                log.exception("ASGI lifespan failed after startup")
            if isinstance(exc, asyncio.CancelledError):
                raise
        else:
            answer = self._answer
            if answer is not None and not answer.done():
                answer.set_exception(RuntimeError("the lifespan coroutine returned"))

    async def _exchange(self, kind: str) -> Message:
        loop = asyncio.get_running_loop()
        self._answer = loop.create_future()
        self._inbox.put_nowait({"type": kind})
        return await asyncio.wait_for(self._answer, self._timeout)

    async def startup(self) -> None:
        """Send ``lifespan.startup`` and wait for the app's answer. Raises
        :class:`LifespanFailure` with the app's message when it fails."""
        if self._mode == "off":
            return
        self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            answer = await self._exchange("lifespan.startup")
        except Exception as exc:
            if self._mode == "on":
                raise LifespanFailure(f"ASGI lifespan startup failed: {exc!r}") from exc
            log.info("the ASGI app does not run lifespan (%r); going on without it", exc)
            await self._stop_task()
            return
        if answer["type"] == "lifespan.startup.failed":
            await self._stop_task()
            raise LifespanFailure(f"ASGI lifespan startup failed: {answer.get('message', '')}")
        if answer["type"] != "lifespan.startup.complete":
            await self._stop_task()
            raise LifespanFailure(f"ASGI lifespan startup: unexpected {answer['type']!r}")
        self.running = True

    async def shutdown(self) -> None:
        """Send ``lifespan.shutdown`` (after startup completed) and wait for the answer."""
        if not self.running:
            return
        self.running = False
        try:
            answer = await self._exchange("lifespan.shutdown")
        except Exception as exc:
            log.error("ASGI lifespan shutdown failed: %r", exc)
        else:
            if answer["type"] == "lifespan.shutdown.failed":
                log.error("ASGI lifespan shutdown failed: %s", answer.get("message", ""))
        await self._stop_task()

    async def _stop_task(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        if not task.done():
            # An app may stay in its lifespan loop after answering: give it a moment to return.
            done, _ = await asyncio.wait([task], timeout=0.1)
            if not done:
                task.cancel()
        # Its error, if any, was already reported through the answer.
        with contextlib.suppress(BaseException):
            await task
