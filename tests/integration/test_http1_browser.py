"""Headless Chromium (Debian's chromium package) on an ``http://`` URL: a page fetches a 16 MiB
file over HTTP/1.1 and checks its SHA-256 with WebCrypto (127.0.0.1 is a secure context)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from support.servers import ServerProcess

PAGE = """<!doctype html><html><body><pre id="out">pending</pre><script>
fetch("/data.bin").then(r => r.arrayBuffer()).then(b => crypto.subtle.digest("SHA-256", b))
  .then(d => { document.getElementById("out").textContent = "sha256=" +
    Array.from(new Uint8Array(d)).map(x => x.toString(16).padStart(2, "0")).join(""); })
  .catch(e => { document.getElementById("out").textContent = "failed: " + e; });
</script></body></html>
"""


def test_chromium_fetches_and_checks_a_file(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("needs Debian's chromium package")
    root = tmp_path / "web"
    root.mkdir()
    data = os.urandom(16 << 20)
    (root / "data.bin").write_bytes(data)
    (root / "index.html").write_text(PAGE)
    log = tmp_path / "access.log"
    server = server_factory("--access-log", str(log), root=root)
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000",
         "--dump-dom", f"{server.url}/index.html"],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    match = re.search(r'<pre id="out">(.*?)</pre>', result.stdout)
    assert match, result.stdout[-500:] + result.stderr[-500:]
    assert match.group(1) == "sha256=" + hashlib.sha256(data).hexdigest()
    server.stop()
    lines = log.read_text().splitlines()
    assert any('"GET /data.bin HTTP/1.1" 200 16777216' in line for line in lines), lines
