"""The benchmark harness still works: ``python -m bench --quick`` runs and produces numbers.

It asserts that the run happened and that every run counted (all requests answered 2xx with
the right byte count), never how fast anything was.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# A real h2load summary (nghttp2 1.52), as tools/h2load_parse.py must read it.
H2LOAD_SAMPLE = """\
Application protocol: h2c
progress: 100% done

finished in 846.28ms, 2363.28 req/s, 2.31GB/s
requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 1.96GB (2099700196) total, 220.70KB (226000) headers (space savings 38.92%), \
1.95GB (2097152000) data
"""


def test_h2load_parse_keeps_h2loads_binary_units() -> None:
    spec = importlib.util.spec_from_file_location("h2load_parse", REPO / "tools/h2load_parse.py")
    assert spec is not None and spec.loader is not None
    parser = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(parser)

    got = parser.parse(H2LOAD_SAMPLE)
    assert got["complete"] and got["protocol"] == "h2c"
    assert got["requests"]["succeeded"] == 2000 and got["requests"]["failed"] == 0
    assert got["status"]["2xx"] == 2000
    assert got["data_bytes"] == 2000 * 1024 * 1024
    # "2.31GB/s" is 2.31 * 1024 MiB/s: the exact figure agrees within the printed rounding.
    assert abs(got["mb_per_s"] - 2.31 * 1024) < 0.005 * 1024
    assert parser.parse("connect refused")["complete"] is False


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (nghttp2-client) missing")
@pytest.mark.parametrize(
    ("proto_args", "protos"),
    # HTTP/1.1 with --pin: each server on CPU 0, h2load on CPU 1.
    [((), {"h2c", "tls"}), (("--proto", "h1", "--pin"), {"h1"})],
    ids=["h2", "h1-pinned"],
)
def test_quick_run_produces_numbers(
    tmp_path: Path, proto_args: tuple[str, ...], protos: set[str]
) -> None:
    argv = [sys.executable, "-m", "bench", "--quick", "--servers", "h2stream,nginx", *proto_args]
    argv += ["--out", str(tmp_path), "--data", str(tmp_path / "data"), "--no-chart"]
    # The harness's own budget ends it before the timeout, so it always stops its servers.
    argv += ["--budget", "80"]
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
    assert {s["proto"] for s in doc["summary"]} == protos
    pinned = "--pin" in proto_args
    first_cpu = sorted(os.sched_getaffinity(0))[:1]
    assert doc["options"]["pinned"]["server_cpus"] == (first_cpu if pinned else [])
    for proto in protos:
        cpus = servers["h2stream"]["cpus"][proto]
        assert (cpus == first_cpu) if pinned else (len(cpus) > 1), cpus
    assert done.returncode == 0, log


def _instructions(*extra: str) -> int:
    argv = [sys.executable, "-m", "bench.instructions", "native", "--requests", "200", *extra]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.fullmatch(r"native: ([\d,]+) instructions per request\n", done.stdout)
    assert found is not None, done.stdout
    return int(found.group(1).replace(",", ""))


# Appended to a copy of the package: every response first spins a while.
SLOWER = """
_respond_as_before = Session.respond


def _respond_later(self, *args, **kwargs):
    for _ in range(2000):
        pass
    return _respond_as_before(self, *args, **kwargs)


Session.respond = _respond_later
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind missing")
def test_instruction_counts_come_out_for_this_checkout_and_another(tmp_path: Path) -> None:
    """``python -m bench.instructions`` runs a micro benchmark under valgrind and reports a
    count per request (never asserted beyond a sane order of magnitude); ``--against`` counts
    another checkout's package: here a copy whose responses each spin 2,000 turns first."""
    ours = _instructions()
    assert 10_000 < ours < 10_000_000
    shutil.copytree(REPO / "h2stream", tmp_path / "h2stream")
    with (tmp_path / "h2stream/core/session.py").open("a") as session:
        session.write(SLOWER)
    theirs = _instructions("--against", str(tmp_path))
    assert theirs > ours + 10_000, (ours, theirs)


def test_instruction_counts_refuse_a_folder_without_h2stream(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "bench.instructions", "--against", str(tmp_path)]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no h2stream package there" in done.stderr, done.stderr
