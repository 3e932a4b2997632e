"""The ASGI handler's per-request path, in-process so its task set can be read: responses
that finish in their first step and responses that wait, side by side under h2load and httpx.

On Python 3.12+ an app's first step runs eagerly inside the read; on 3.11 it runs in a Task.
Either way the app's task is ``asyncio.current_task()`` from its first line to its last (anyio's
cancel scopes depend on it), every task leaves the handler's set when its coroutine ends, and
the response is the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.h2load import assert_all_succeeded, h2load
from support.polling import wait_until
from support.servers import InProcessServer, loopback_config

from h2stream.handlers.asgi import AsgiHandler

BODY = b"x" * 1024
# Shared by every /file response: the server must not add its content-length to it.
FILE_HEADERS = [(b"content-type", b"application/octet-stream")]
# Sent again and again by /count, changed in place between responses: a list of tuples
# (an item replaced) and a list of lists (an inner list changed).
COUNTED_TUPLES = [(b"x-tuple", b"0")]
COUNTED_PAIRS = [[b"x-pair", b"0"]]


def make_app(file_path: Path) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        task = asyncio.current_task()
        if path == "/later":
            await asyncio.sleep(0.001)  # a real wait: the rest runs in the app's task
        elif path == "/task":
            await asyncio.sleep(0)
            same = task is not None and asyncio.current_task() is task
            body = b"same task" if same else b"task changed"
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
            return
        elif path == "/mixed-case":
            headers = [(b"X-Mixed-Case", b"1"), (b"content-length", b"2")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        elif path == "/file":
            await send({"type": "http.response.start", "status": 200, "headers": FILE_HEADERS})
            await send({"type": "http.response.pathsend", "path": str(file_path)})
            return
        elif path == "/fail":
            raise RuntimeError("failing on purpose")
        elif path in ("/tuples", "/pairs"):
            n = scope["query_string"]
            COUNTED_TUPLES[0] = (b"x-tuple", n)
            COUNTED_PAIRS[0][1] = n
            headers = COUNTED_TUPLES if path == "/tuples" else COUNTED_PAIRS
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": n})
            return
        elif path == "/headers":
            # The request's fields as the app got them; then the app spoils its list, which
            # must not reach the next request's scope.
            got = b"\n".join(b"%s: %s" % pair for pair in scope["headers"])
            scope["headers"].append((b"x-spoiled", b"by the app"))
            scope["headers"][0] = (b"host", b"spoiled")
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": got})
            return
        headers = [(b"content-length", b"%d" % len(BODY))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": BODY})

    return app


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InProcessServer, Any]]:
    root = tmp_path_factory.mktemp("asgi-path")
    file_path = root / "file.bin"
    file_path.write_bytes(b"f" * 5000)
    config = loopback_config(root, lifespan="off")
    handler = AsgiHandler(make_app(file_path), config)
    server = InProcessServer(config, handler)
    yield server, handler
    server.stop()


def _tasks(server: InProcessServer, handler: AsgiHandler) -> int:
    async def count() -> int:
        return len(handler.tasks)

    return int(server.call(count()))


@pytest.mark.parametrize("path", ["/now", "/later"])
def test_many_requests_leave_no_task_behind(served: tuple[InProcessServer, Any], path: str) -> None:
    server, handler = served
    run = h2load(server.url + path, "-n", "3000", "-c", "4", "-m", "50")
    assert_all_succeeded(run, 3000)
    assert run.data_bytes >= 3000 * len(BODY)
    assert wait_until(lambda: _tasks(server, handler) == 0, 10, 0.02)


def test_the_app_keeps_its_task_across_awaits(served: tuple[InProcessServer, Any]) -> None:
    server, _ = served
    with httpx.Client(http2=True) as client:
        bodies = {client.get(server.url + "/task").content for _ in range(20)}
    assert bodies == {b"same task"}


def test_response_header_names_are_lowercased(served: tuple[InProcessServer, Any]) -> None:
    server, _ = served
    with httpx.Client(http2=True) as client:
        response = client.get(server.url + "/mixed-case")
    assert (response.status_code, response.content) == (200, b"ok")
    assert response.headers["x-mixed-case"] == "1"


def test_pathsend_leaves_the_apps_header_list_alone(served: tuple[InProcessServer, Any]) -> None:
    server, _ = served
    with httpx.Client(http2=True) as client:
        for _ in range(3):
            response = client.get(server.url + "/file")
            assert response.content == b"f" * 5000
            assert response.headers.get_list("content-length") == ["5000"]
    assert FILE_HEADERS == [(b"content-type", b"application/octet-stream")]


def test_a_failing_app_among_good_ones(served: tuple[InProcessServer, Any]) -> None:
    server, handler = served
    with httpx.Client(http2=True) as client:
        statuses = [client.get(server.url + p).status_code for p in ("/fail", "/now") * 10]
    assert statuses == [500, 200] * 10
    assert wait_until(lambda: _tasks(server, handler) == 0, 10, 0.02)


def test_each_request_gets_its_own_fields(served: tuple[InProcessServer, Any]) -> None:
    """Repeated field lists are converted once (AsgiHandler): a repeat gets them unspoiled by
    what the app did to the last request's list, and a different list gets its own."""
    server, _ = served
    seen = []
    with httpx.Client(http2=True) as client:
        for value in "aaabaaa":
            response = client.get(server.url + "/headers", headers={"x-value": value})
            seen.append(response.content.decode().split("\n"))
    for value, fields in zip("aaabaaa", seen, strict=True):
        assert fields[0] == f"host: {server.url.split('//')[1]}", fields
        assert f"x-value: {value}" in fields and "x-spoiled: by the app" not in fields, fields


@pytest.mark.parametrize(("path", "name"), [("/tuples", "x-tuple"), ("/pairs", "x-pair")])
def test_a_list_the_app_changes_between_responses(
    served: tuple[InProcessServer, Any], path: str, name: str
) -> None:
    """The app sends one list object every time, changed in place in between: each response
    carries what the list held when it was sent (AsgiHandler keeps its own copies)."""
    server, _ = served
    with httpx.Client(http2=True) as client:
        for n in ("1", "1", "2", "2", "3", "1"):
            response = client.get(f"{server.url}{path}?{n}")
            assert (response.content.decode(), response.headers.get(name)) == (n, n)
