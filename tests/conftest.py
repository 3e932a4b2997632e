"""Fixtures: the generated test files, and real h2stream servers on loopback (the servers and
every other helper are in the ``support`` package)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.files import SIZES, populate, sha256_file
from support.metrics import metrics_url
from support.servers import InProcessServer, ServerProcess, loopback_config


@pytest.fixture(scope="session")
def files_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return populate(tmp_path_factory.mktemp("root"))


@pytest.fixture(scope="session")
def digests(files_root: Path) -> dict[str, str]:
    return {name: sha256_file(files_root / name) for name in SIZES}


@pytest.fixture
def server_factory(files_root: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start server processes (ROOT is ``files_root`` unless ``root`` is given); all are
    stopped after the test."""
    started: list[ServerProcess] = []

    def start(*args: str, root: Path | None = None, **options: Any) -> ServerProcess:
        server = ServerProcess(root or files_root, *args, **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def observed(
    server_factory: Callable[..., ServerProcess],
) -> Callable[..., tuple[ServerProcess, str]]:
    """Start a server with a metrics listener; return it and the listener's base URL."""

    def start(*args: str) -> tuple[ServerProcess, str]:
        server = server_factory("--metrics-bind", "127.0.0.1:0", *args)
        return server, metrics_url(server)

    return start


@pytest.fixture(scope="session")
def h2c_server(files_root: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(files_root)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tls_server(files_root: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(files_root, "--self-signed")
    yield server
    server.stop()


@pytest.fixture
def inprocess_factory(files_root: Path) -> Iterator[Callable[..., InProcessServer]]:
    """Start in-process servers on ``files_root`` with Config ``changes``; all are stopped
    after the test."""
    started: list[InProcessServer] = []

    def start(**changes: object) -> InProcessServer:
        server = InProcessServer(loopback_config(files_root, **changes))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
