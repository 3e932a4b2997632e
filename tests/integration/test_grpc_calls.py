"""gRPC calls from real clients against ``h2stream serve --app examples.grpc_bench:app``:
grpcio (the C-core client, sync and ``grpc.aio``) with generic callables, and grpc-go as an
independent second client. Bodies, counts and digests exact; no timing assertions."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Iterator

import pytest
from support.grpc_clients import (
    SERVING,
    Methods,
    address,
    go_client,
    grpc,
    run_go,
    stream_spec,
)
from support.servers import ServerProcess

MIB = 1 << 20


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    # Default limits: grpc-go pings as data arrives (its window estimator), which the PING
    # budget credits per turn of DATA sent.
    process = ServerProcess(None, "--app", "examples.grpc_bench:app")
    yield process
    process.stop()


@pytest.fixture
def methods(server: ServerProcess) -> Iterator[Methods]:
    with grpc.insecure_channel(address(server.url)) as channel:
        yield Methods(channel)


def test_each_example_method_sync(methods: Methods) -> None:
    assert methods.echo(b"hello", timeout=20) == b"hello"
    assert methods.echo(b"", timeout=20) == b""
    replies = list(methods.stream(stream_spec(1000, 1024), timeout=30))
    assert len(replies) == 1000
    assert all(reply == b"x" * 1024 for reply in replies)
    reply = methods.upload(iter([b"a" * 1000] * 300 + [b""]), timeout=30)
    assert json.loads(reply) == {"messages": 301, "bytes": 300_000}
    words = [b"one", b"two", b"", b"x" * 100_000]
    assert list(methods.chat(iter(words), timeout=30)) == words
    assert methods.health(b"", timeout=20) == SERVING


def test_each_example_method_aio(server: ServerProcess) -> None:
    async def calls() -> None:
        async with grpc.aio.insecure_channel(address(server.url)) as channel:
            methods = Methods(channel)
            assert await methods.echo(b"aio", timeout=20) == b"aio"
            count = 0
            async for reply in methods.stream(stream_spec(500, 65536), timeout=30):
                assert len(reply) == 65536
                count += 1
            assert count == 500
            upload = await methods.upload(iter([b"b" * 4096] * 100), timeout=30)
            assert json.loads(upload) == {"messages": 100, "bytes": 409_600}
            chat = methods.chat(timeout=30)
            # Each reply arrives before the next message is written: a real bidi stream.
            for word in (b"ping", b"pong", b"z" * 70_000):
                await chat.write(word)
                assert await chat.read() == word
            await chat.done_writing()
            assert await chat.read() == grpc.aio.EOF
            assert await chat.code() == grpc.StatusCode.OK

    asyncio.run(asyncio.wait_for(calls(), 90))


def test_one_gib_stream_sha256(methods: Methods) -> None:
    count = 1024**3 // 65536
    digest = hashlib.sha256()
    received = 0
    for reply in methods.stream(stream_spec(count, 65536), timeout=240):
        digest.update(reply)
        received += 1
    expected = hashlib.sha256()
    block = b"x" * 65536
    for _ in range(count):
        expected.update(block)
    assert received == count
    assert digest.hexdigest() == expected.hexdigest()


def test_slow_reader_keeps_server_rss_flat(server: ServerProcess, methods: Methods) -> None:
    # Warm up (first allocations, pools), then read 256 MiB slowly.
    for _ in methods.stream(stream_spec(200, 65536), timeout=30):
        pass
    before = server.rss()
    peak = before
    call = methods.stream(stream_spec(4096, 65536), timeout=120)
    for index, reply in enumerate(call):
        assert len(reply) == 65536
        if index % 16 == 0:
            time.sleep(0.01)
            peak = max(peak, server.rss())
    assert index == 4095
    assert peak - before < 10 * MIB, (before, peak)


def test_gzip_both_ways(methods: Methods) -> None:
    payload = json.dumps({"text": "gzip " * 20_000}).encode()
    assert methods.echo(payload, compression=grpc.Compression.Gzip, timeout=20) == payload
    words = [b"a" * 50_000, b"b" * 10]
    chat = methods.chat(iter(words), compression=grpc.Compression.Gzip, timeout=20)
    assert list(chat) == words


def test_unknown_method_is_unimplemented(methods: Methods) -> None:
    with pytest.raises(grpc.RpcError) as failure:
        methods.unary("/no.Such/Method")(b"x", timeout=20)
    assert failure.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_oversize_message_is_resource_exhausted(methods: Methods) -> None:
    with pytest.raises(grpc.RpcError) as failure:
        methods.echo(b"x" * (4 * MIB + 1), timeout=30)
    assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The connection is still good.
    assert methods.echo(b"after", timeout=20) == b"after"


def test_cancel_mid_stream(methods: Methods) -> None:
    call = methods.stream(stream_spec(1_000_000, 65536), timeout=60)
    for index, _ in enumerate(call):
        if index == 100:
            call.cancel()
            break
    assert call.code() == grpc.StatusCode.CANCELLED
    assert methods.echo(b"still serving", timeout=20) == b"still serving"


def test_grpc_go_client(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> None:
    binary = go_client(tmp_path_factory.mktemp("grpc-go"))
    target = address(server.url)
    assert run_go(binary, target, "echo", "from go") == {
        "code": 0,
        "message": "",
        "reply": "from go",
    }
    streamed = run_go(binary, target, "stream", '{"count": 1024, "size": 65536}')
    assert streamed["code"] == 0
    assert streamed["messages"] == 1024
    assert streamed["bytes"] == 64 * MIB
    assert streamed["sha256"] == hashlib.sha256(b"x" * 64 * MIB).hexdigest()
    uploaded = run_go(binary, target, "upload", "500", "3000")
    assert json.loads(uploaded["reply"]) == {"messages": 500, "bytes": 1_500_000}
    assert run_go(binary, target, "chat", "a", "bb", "ccc")["replies"] == ["a", "bb", "ccc"]
    assert run_go(binary, target, "health")["reply"] == SERVING.hex()
    assert run_go(binary, target, "unknown")["code"] == grpc.StatusCode.UNIMPLEMENTED.value[0]


def test_max_message_size_from_the_command_line(
    server_factory: Callable[..., ServerProcess],
) -> None:
    small = server_factory("--app", "examples.grpc_bench:app", "--grpc-max-message-size", "64K")
    with grpc.insecure_channel(address(small.url)) as channel:
        methods = Methods(channel)
        assert methods.echo(b"x" * 65536, timeout=20) == b"x" * 65536
        with pytest.raises(grpc.RpcError) as failure:
            methods.echo(b"x" * 65537, timeout=20)
        assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
