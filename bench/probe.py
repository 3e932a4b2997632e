"""Ask a running server one question over HTTP/2 (status and response headers) with curl.

Used to find optional endpoints (from-memory bytes, zstd) before a scenario depends on them.
h2c goes with prior knowledge: no Upgrade dance, the same way h2load connects.
"""

from __future__ import annotations

import shutil
import subprocess


def get(
    url: str, headers: tuple[str, ...] = (), timeout: float = 10.0
) -> tuple[int, dict[str, str]]:
    """Return (status, lower-cased headers); status 0 when nothing usable came back."""
    curl = shutil.which("curl")
    if curl is None:
        return 0, {}
    argv = [curl, "-s", "-o", "/dev/null", "-D", "-", "--max-time", str(timeout)]
    argv += ["--http2", "-k"] if url.startswith("https:") else ["--http2-prior-knowledge"]
    for h in headers:
        argv += ["-H", h]
    argv.append(url)
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout + 5, check=False
        )
    except subprocess.TimeoutExpired:
        return 0, {}
    status, found = 0, {}
    for line in done.stdout.splitlines():
        if line.startswith("HTTP/"):
            parts = line.split()
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        elif ":" in line:
            k, _, v = line.partition(":")
            found[k.strip().lower()] = v.strip()
    return status, found
