"""Run h2load once, bounded in time, and judge whether the run counts.

A run counts only if every request succeeded with a 2xx over the protocol asked for (HTTP/2,
or HTTP/1.1 with ``--h1``) and, for files, the body
bytes add up to n times the file size: a server answering errors fast must not look fast.
"""

from __future__ import annotations

import importlib.util
import resource
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from bench import procs
from bench.scenarios import Load

TOOLS = Path(__file__).resolve().parents[1] / "tools"
# Seconds between checks of a running h2load (exit, timeout, stall).
POLL = 0.25


def _load_parser() -> ModuleType:
    # tools/ is a folder of scripts, not a package: load the parser by its path.
    spec = importlib.util.spec_from_file_location("h2load_parse", TOOLS / "h2load_parse.py")
    if spec is None or spec.loader is None:
        raise ImportError("tools/h2load_parse.py not found")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


h2load_parse = _load_parser()


def binary() -> str | None:
    return shutil.which("h2load")


def version() -> str:
    exe = binary()
    if exe is None:
        return "h2load not installed"
    done = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=20)
    return done.stdout.strip() or done.stderr.strip()


@dataclass
class Run:
    argv: list[str]
    returncode: int | None
    wall_s: float
    client_cpu_s: float
    parsed: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    output_tail: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


def command(url: str, load: Load, headers: tuple[str, ...] = (), h1: bool = False) -> list[str]:
    argv = [binary() or "h2load", *load.flags()]
    if h1:
        argv.append("--h1")
    for h in headers:
        argv += ["-H", h]
    return [*argv, url]


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def judge(parsed: dict[str, Any], load: Load, body_size: int | None, h1: bool = False) -> list[str]:
    problems = []
    req = parsed["requests"]
    if not parsed["complete"]:
        return ["no summary in h2load's output"]
    wanted, label = (("http/1.1",), "HTTP/1.1") if h1 else (("h2c", "h2"), "HTTP/2")
    if parsed["protocol"] not in wanted:
        problems.append(f"protocol {parsed['protocol']} instead of {label}")
    bad = {k: req[k] for k in ("failed", "errored", "timeout") if req.get(k)}
    if bad:
        problems.append(", ".join(f"{v} {k}" for k, v in bad.items()))
    ok_2xx = parsed["status"].get("2xx", 0)
    if ok_2xx != load.n:
        codes = ", ".join(f"{v} {k}" for k, v in parsed["status"].items() if v)
        problems.append(f"{ok_2xx} of {load.n} answered 2xx ({codes or 'no status'})")
    if body_size is not None and not problems and parsed["data_bytes"] != body_size * load.n:
        problems.append(f"{parsed['data_bytes']} body bytes, expected {body_size * load.n}")
    return problems


def _rchar(pid: int) -> int | None:
    """Bytes h2load has read so far (sockets included), from /proc/PID/io."""
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _wait(proc: subprocess.Popen[bytes], timeout: float, stall: float) -> str | None:
    """Wait for h2load; kill it and say why if it runs past ``timeout`` or reads nothing for
    ``stall`` seconds (a server that stops sending would otherwise cost the whole timeout)."""
    t0 = time.monotonic()
    last, moved = -1, t0
    while True:
        try:
            proc.wait(timeout=POLL)
            return None
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        got = _rchar(proc.pid)
        if got is not None and got != last:
            last, moved = got, now
        why = None
        if now - t0 > timeout:
            why = f"h2load timed out after {timeout:.0f}s"
        elif now - moved > stall:
            why = f"stalled: h2load received nothing for {stall:.0f}s (killed)"
        if why:
            proc.kill()
            proc.wait()
            return why


def run(
    url: str,
    load: Load,
    *,
    timeout: float,
    stall: float,
    body_size: int | None,
    headers: tuple[str, ...] = (),
    h1: bool = False,
    cpus: frozenset[int] | None = None,
) -> Run:
    argv = command(url, load, headers, h1)
    cpu0, t0 = _children_cpu(), time.monotonic()
    # Output to a file, not a pipe: nothing to drain while polling, nothing lost on a kill.
    with tempfile.TemporaryFile() as sink:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            preexec_fn=procs.pinned_to(cpus),
        )
        killed = _wait(proc, timeout, stall)
        wall = time.monotonic() - t0
        sink.seek(0)
        out = sink.read().decode("utf-8", "replace")
    parsed = h2load_parse.parse(out)
    if killed:
        problems = [killed]
    else:
        problems = judge(parsed, load, body_size, h1)
        if proc.returncode != 0:
            problems.insert(0, f"h2load exit {proc.returncode}")
    return Run(argv, proc.returncode, wall, _children_cpu() - cpu0, parsed, problems, out[-800:])
