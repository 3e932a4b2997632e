"""Instructions per request of the protocol core, counted by valgrind: ``python -m
bench.instructions``.

Process time on a shared VM moves by 10-30% from one run to the next; an instruction count
does not (the same total twice, whatever else the machine does). Each micro benchmark runs
under ``valgrind --tool=cachegrind --cache-sim=no`` twice, with one round of ``--requests``
and with two rounds of the same request bytes: start-up, imports and the client that encodes
the requests are in both, so the difference is one round of the server's work. Needs
valgrind (Debian's package); about 30 s per benchmark.

Before and after: ``--against`` counts another checkout's ``h2stream`` package (an older
commit, as for ``h2stream-baseline``) with this checkout's micro benchmarks, so both sides run
the same measuring code::

    git worktree add /tmp/h2stream-before REV
    python -m bench.instructions
    python -m bench.instructions --against /tmp/h2stream-before
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# name -> the micro benchmark's module and options.
BENCHMARKS: dict[str, tuple[str, ...]] = {
    "session": ("bench.micro_session",),
    "asgi": ("bench.micro_asgi",),
    "native": ("bench.micro_asgi", "--native"),
    "http1": ("bench.micro_http1",),
}

_TOTAL = re.compile(r"I\s+refs:\s+([\d,]+)")


def count(argv: list[str], path: list[str]) -> int:
    """Instructions executed by ``argv`` (a Python command line) with the folders ``path``
    first on its module path, as cachegrind counts them."""
    valgrind = ["valgrind", "--tool=cachegrind", "--cache-sim=no"]
    valgrind.append("--cachegrind-out-file=/dev/null")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    # ``-m`` puts the working directory first on the path: the first folder, so it wins.
    done = subprocess.run(
        [*valgrind, *argv], capture_output=True, text=True, check=True, cwd=path[0], env=env
    )
    found = _TOTAL.search(done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output: {done.stderr[-500:]}")
    return int(found.group(1).replace(",", ""))


def per_request(name: str, requests: int, path: list[str]) -> float:
    module, *options = BENCHMARKS[name]
    argv = [sys.executable, "-m", module, *options, "--requests", str(requests)]
    one = count([*argv, "--rounds", "1"], path)
    two = count([*argv, "--rounds", "2"], path)
    return (two - one) / requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "benchmarks", nargs="*", help=f"which (default all: {', '.join(BENCHMARKS)})"
    )
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument(
        "--against",
        type=Path,
        help="another checkout whose h2stream package to count (this one's benchmarks)",
    )
    args = parser.parse_args()
    unknown = [name for name in args.benchmarks if name not in BENCHMARKS]
    if unknown:
        known = ", ".join(BENCHMARKS)
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}: choose from {known}")
    if args.requests < 100:
        parser.error("--requests: at least 100 (one batch of requests per read)")
    package = None
    if args.against is not None:
        package = args.against.resolve() / "h2stream"
        if not (package / "__init__.py").is_file():
            parser.error(f"--against {args.against}: no h2stream package there")
    if shutil.which("valgrind") is None:
        print("error: valgrind not found (apt-get install valgrind)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as shadow:
        path = [str(REPO)]
        if package is not None:
            # Its package ahead of ours; bench/ still from this checkout.
            os.symlink(package, Path(shadow) / "h2stream")
            path.insert(0, shadow)
        for name in args.benchmarks or BENCHMARKS:
            found = per_request(name, args.requests, path)
            print(f"{name}: {found:,.0f} instructions per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
