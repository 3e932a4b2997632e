"""A unary (or server-streaming) gRPC handler starts once its request is complete and runs
inline, with no task, until it first suspends; then it goes on in a task. Seen from the
handler nothing differs from running in a task: a current task (asyncio.timeout and task
groups work), its own context, cancellation by the client's RST_STREAM.

The session is driven by an h2 client with no sockets, each read handed to it from a loop
callback as the protocol layer does (not from inside a task).
"""

from __future__ import annotations

import asyncio
import contextvars
import struct
from typing import Any

import h2.config
import h2.connection
import h2.events
from support.recording import RecordingSink

from h2stream.config import Config
from h2stream.core.session import Session
from h2stream.handlers.grpc import Call, GrpcService

PATH = "/t.S/"
SEEN: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="-")


class Peer:
    def __init__(self, service: GrpcService) -> None:
        self.sink = RecordingSink()
        self.session = Session(Config(), self.sink, service, lambda: None, wake=self._wake)
        self.client = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.events: list[Any] = []
        self.session.start()
        self.client.initiate_connection()
        self.loop = asyncio.get_running_loop()

    def _wake(self) -> None:
        self.loop.call_soon(self._pump)

    def _pump(self) -> None:
        self.session.pump()
        self._collect()

    def _collect(self) -> None:
        out = bytes(self.sink.out)
        self.sink.out.clear()
        if out:
            self.events += self.client.receive_data(out)

    def _receive(self) -> None:
        data = self.client.data_to_send()
        if data:
            self.session.receive(data)
            self._collect()

    async def exchange(self) -> None:
        """The client's queued bytes to the session from a loop callback, then a few turns."""
        self.loop.call_soon(self._receive)
        for _ in range(5):
            await asyncio.sleep(0)

    def call(self, method: str, message: bytes, end: bool = True) -> int:
        stream_id = self.client.get_next_available_stream_id()
        self.client.send_headers(
            stream_id,
            [
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":authority", b"x"),
                (b":path", (PATH + method).encode()),
                (b"content-type", b"application/grpc"),
                (b"te", b"trailers"),
            ],
        )
        self.client.send_data(stream_id, struct.pack(">BI", 0, len(message)) + message, end)
        return stream_id

    def status(self, stream_id: int) -> bytes | None:
        for event in self.events:
            if isinstance(event, h2.events.TrailersReceived) and event.stream_id == stream_id:
                return dict(event.headers)[b"grpc-status"]
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream_id:
                fields = dict(event.headers)
                if b"grpc-status" in fields:
                    return fields[b"grpc-status"]
        return None

    def replies(self, stream_id: int) -> bytes:
        return b"".join(
            e.data
            for e in self.events
            if isinstance(e, h2.events.DataReceived) and e.stream_id == stream_id
        )


def service() -> tuple[GrpcService, dict[str, Any]]:
    svc = GrpcService()
    seen: dict[str, Any] = {}

    @svc.unary(PATH + "Echo")
    async def echo(request: bytes, call: Call) -> bytes:
        seen["task"] = asyncio.current_task()
        SEEN.set("echo")
        return request

    @svc.unary(PATH + "Timed")
    async def timed(request: bytes, call: Call) -> bytes:
        try:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(10)
        except TimeoutError:
            seen["timed_out"] = True
        return b"after"

    @svc.unary(PATH + "Slow")
    async def slow(request: bytes, call: Call) -> bytes:
        try:
            await asyncio.sleep(10)
        finally:
            seen["slow_finally"] = True
        return b""

    @svc.server_stream(PATH + "Many")
    async def many(request: bytes, call: Call) -> Any:
        for _ in range(int(request)):
            yield b"m" * 1000
            await asyncio.sleep(0)

    return svc, seen


def run(test: Any) -> None:
    asyncio.run(asyncio.wait_for(test(), 10))


def test_a_handler_that_never_suspends_runs_without_a_task() -> None:
    async def main() -> None:
        svc, seen = service()
        peer = Peer(svc)
        before = len(asyncio.all_tasks())
        stream_id = peer.call("Echo", b"hello")
        await peer.exchange()
        assert peer.status(stream_id) == b"0"
        assert peer.replies(stream_id)[5:] == b"hello"
        # A current task while it ran (a stand-in), no task left behind, and the context
        # variable it set stayed in its own context.
        assert seen["task"] is not None
        assert len(asyncio.all_tasks()) == before and not svc.tasks
        assert SEEN.get() == "-"

    run(main)


def test_asyncio_timeout_works_in_an_inline_handler() -> None:
    async def main() -> None:
        svc, seen = service()
        peer = Peer(svc)
        stream_id = peer.call("Timed", b"x")
        await peer.exchange()
        await asyncio.sleep(0.05)
        await peer.exchange()
        assert seen.get("timed_out") is True
        assert peer.status(stream_id) == b"0"
        assert peer.replies(stream_id)[5:] == b"after"

    run(main)


def test_a_handler_that_suspends_goes_on_in_a_task_and_a_reset_cancels_it() -> None:
    async def main() -> None:
        svc, seen = service()
        peer = Peer(svc)
        stream_id = peer.call("Slow", b"x")
        await peer.exchange()
        assert len(svc.tasks) == 1
        peer.client.reset_stream(stream_id, 8)  # CANCEL
        await peer.exchange()
        await asyncio.sleep(0.01)
        assert seen.get("slow_finally") is True
        assert not svc.tasks

    run(main)


def test_a_server_stream_that_suspends_sends_every_message() -> None:
    async def main() -> None:
        svc, _ = service()
        peer = Peer(svc)
        stream_id = peer.call("Many", b"50")
        await peer.exchange()
        for _ in range(100):
            await asyncio.sleep(0)
            if peer.status(stream_id) is not None:
                break
        assert peer.status(stream_id) == b"0"
        assert len(peer.replies(stream_id)) == 50 * 1005

    run(main)


def test_a_request_still_arriving_starts_the_handler_only_at_its_end() -> None:
    async def main() -> None:
        svc, seen = service()
        peer = Peer(svc)
        stream_id = peer.call("Echo", b"late", end=False)
        await peer.exchange()
        assert "task" not in seen and peer.status(stream_id) is None
        peer.client.end_stream(stream_id)
        await peer.exchange()
        assert peer.status(stream_id) == b"0"
        assert peer.replies(stream_id)[5:] == b"late"

    run(main)


def test_a_reset_before_the_task_first_runs_cancels_the_handler_at_its_await() -> None:
    async def main() -> None:
        svc, seen = service()
        peer = Peer(svc)
        # The handler suspends inline; the client's RST_STREAM comes in the next read, in
        # the same loop turn, so its task is cancelled before it ever ran.
        stream_id = peer.call("Slow", b"x")
        call = peer.client.data_to_send()
        peer.client.reset_stream(stream_id, 8)  # CANCEL
        reset = peer.client.data_to_send()

        def two_reads() -> None:
            peer.session.receive(call)
            assert len(svc.tasks) == 1
            peer.session.receive(reset)

        peer.loop.call_soon(two_reads)
        await asyncio.sleep(0.01)
        assert seen.get("slow_finally") is True
        assert not svc.tasks

    run(main)
