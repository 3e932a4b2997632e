"""The benchmark harness still works: ``python -m bench --quick`` runs and produces numbers.

It asserts that the run happened and that every run counted (all requests answered 2xx with
the right byte count), never how fast anything was.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (nghttp2-client) missing"),
]


def test_quick_run_produces_numbers(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "bench", "--quick", "--servers", "h2stream,nginx"]
    argv += ["--out", str(tmp_path), "--data", str(tmp_path / "data"), "--no-chart"]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    log = f"exit {done.returncode}\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"

    found = sorted(tmp_path.glob("results-*.json"))
    assert len(found) == 1, log
    doc = json.loads(found[0].read_text())

    # h2stream must have run; nginx only where it is installed.
    servers = doc["servers"]
    assert "skipped" not in servers["h2stream"], servers["h2stream"]
    expected = {"h2stream"} | ({"nginx"} if "skipped" not in servers["nginx"] else set())

    records = doc["records"]
    assert records, log
    failed = [r for r in records if r["status"] == "failed"]
    assert not failed, [(r["server"], r["proto"], r["scenario"], r["reason"]) for r in failed]
    skipped = [r for r in records if r["status"] == "skipped"]
    assert not skipped, [(r["server"], r["proto"], r["scenario"], r["reason"]) for r in skipped]

    ran = {r["server"] for r in records}
    assert ran == expected, log
    for r in records:
        assert r["value"] > 0, r
        assert r["cpu_s"] is not None and r["cpu_s"] >= 0, r
        assert r["peak_rss_mib"] > 0, r
        assert r["h2load"]["requests"]["failed"] == 0, r
    # Every scenario that applies ran on every server, on both protocols, each round.
    for summary in doc["summary"]:
        assert summary["median"] is not None and summary["median"] > 0, summary
        assert summary["ok_rounds"] == doc["options"]["rounds"], summary
    assert {s["proto"] for s in doc["summary"]} == {"h2c", "tls"}
    assert done.returncode == 0, log
