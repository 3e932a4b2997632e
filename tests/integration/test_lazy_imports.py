"""A worker imports only what its configuration uses (README "Memory"): a real server process
with ``PYTHONPROFILEIMPORTTIME`` reports every module it loads on stderr; after serving files
over HTTP/2 and HTTP/1.1 it has loaded none of the modules that only other features need, and
each one comes in when its feature is used.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.clients import fetch
from support.curl import run_curl
from support.servers import ServerProcess

# Modules a server of files alone does without, with what each one costs it at rest.
NOT_AT_REST = (
    "zstandard",  # compressed responses
    "h2stream.handlers.asgi",  # --app with an ASGI application
    "h2stream.handlers.grpc",  # gRPC apps
    "ctypes",  # the idle heap trim
    "html",  # HTML directory listings
    "calendar",  # conditional requests
    "email.utils",  # conditional requests
    "shutil",  # argparse's help width; --self-signed
    "tempfile",  # --self-signed
    "encodings.idna",  # the event loop's resolver, for a --bind host that is a name
)


def loaded(server: ServerProcess) -> set[str]:
    """The modules the server imported so far, from its import-time report."""
    names = set()
    for line in list(server.stderr_lines):
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "package":  # the report's header line
                names.add(name)
    return names


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    root = tmp_path / "root"
    root.mkdir()
    (root / "data.bin").write_bytes(os.urandom(200_000))
    (root / "page.txt").write_text("words " * 20_000)
    (root / "sub").mkdir()
    process = ServerProcess(root, "--directory-listing", env={"PYTHONPROFILEIMPORTTIME": "1"})
    yield process
    process.stop()


def test_a_server_of_files_loads_only_what_it_uses(server: ServerProcess) -> None:
    assert len(fetch(server.port, "/data.bin")) == 200_000
    done = run_curl("--http1.1", "-o", "/dev/null", "-w", "%{http_code}", f"{server.url}/data.bin")
    assert done.stdout == b"200"
    modules = loaded(server)
    assert "h2stream.handlers.static" in modules  # the report is there
    at_rest = sorted(name for name in NOT_AT_REST if name in modules)
    assert not at_rest, f"loaded without being used: {at_rest}"

    # Each comes in with its feature, and the feature works.
    done = run_curl("-H", "accept-encoding: gzip", f"{server.url}/page.txt")
    assert done.returncode == 0
    assert gzip.decompress(done.stdout) == b"words " * 20_000
    zstd = ("-H", "accept-encoding: zstd", "-o", "/dev/null", "-D", "-")
    done = run_curl(*zstd, f"{server.url}/page.txt")
    assert b"content-encoding: zstd" in done.stdout.lower()
    done = run_curl("-H", "accept: text/html", f"{server.url}/sub/")
    assert done.returncode == 0 and b"<a" in done.stdout
    since = "if-modified-since: Sun, 06 Nov 1994 08:49:37 GMT"
    done = run_curl("-H", since, "-o", "/dev/null", "-w", "%{http_code}", f"{server.url}/data.bin")
    assert done.stdout == b"200"
    modules = loaded(server)
    for name in ("zstandard", "html", "calendar", "email.utils"):
        assert name in modules, f"{name} was never loaded: its feature did not run"
