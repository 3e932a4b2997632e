"""The gRPC bench (python -m bench.grpc_bench) end to end in its quick mode: both servers
start, every h2load run counts (all calls succeeded), the summary has a ratio per scenario.
No speed is asserted: this checks the harness, not the machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.commands import REPO, require

pytest.importorskip("grpc")


def test_quick_round(tmp_path: Path) -> None:
    require("h2load")
    out = tmp_path / "grpc.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.grpc_bench", "--quick", "--rounds", "1", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads(out.read_text())["summary"]
    assert [row["scenario"] for row in summary] == ["G-stream-64k", "G-stream-1k", "G-unary-100"]
    for row in summary:
        assert row["ok"] and row["ratio_median"] > 0
        assert row["h2stream_peak_rss_mib"] > 0 and row["grpcio_peak_rss_mib"] > 0
