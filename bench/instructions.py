"""Instructions per request of the protocol core, counted by valgrind: ``python -m
bench.instructions``.

Process time on a shared VM moves by 10-30% from one run to the next; an instruction count
does not (the same total twice, whatever else the machine does). Each micro benchmark runs
under ``valgrind --tool=cachegrind --cache-sim=no`` twice, with one round of ``--requests``
and with two rounds of the same request bytes: start-up, imports and the client that encodes
the requests are in both, so the difference is one round of the server's work. Needs
valgrind (Debian's package); about 30 s per benchmark.

Compare two checkouts by running it in each (``PYTHONPATH`` as for ``h2stream-baseline``)::

    python -m bench.instructions
    (cd /tmp/h2stream-before && PYTHONPATH=$PWD python -m bench.instructions)
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys

# name -> the micro benchmark's module and options.
BENCHMARKS: dict[str, tuple[str, ...]] = {
    "session": ("bench.micro_session",),
    "asgi": ("bench.micro_asgi",),
    "native": ("bench.micro_asgi", "--native"),
    "http1": ("bench.micro_http1",),
}

_TOTAL = re.compile(r"I\s+refs:\s+([\d,]+)")


def count(argv: list[str]) -> int:
    """Instructions executed by ``argv`` (a Python command line), as cachegrind counts them."""
    valgrind = ["valgrind", "--tool=cachegrind", "--cache-sim=no"]
    valgrind.append("--cachegrind-out-file=/dev/null")
    done = subprocess.run([*valgrind, *argv], capture_output=True, text=True, check=True)
    found = _TOTAL.search(done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output: {done.stderr[-500:]}")
    return int(found.group(1).replace(",", ""))


def per_request(name: str, requests: int) -> float:
    module, *options = BENCHMARKS[name]
    argv = [sys.executable, "-m", module, *options, "--requests", str(requests)]
    one = count([*argv, "--rounds", "1"])
    two = count([*argv, "--rounds", "2"])
    return (two - one) / requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "benchmarks", nargs="*", help=f"which (default all: {', '.join(BENCHMARKS)})"
    )
    parser.add_argument("--requests", type=int, default=10_000)
    args = parser.parse_args()
    unknown = [name for name in args.benchmarks if name not in BENCHMARKS]
    if unknown:
        known = ", ".join(BENCHMARKS)
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}: choose from {known}")
    if args.requests < 100:
        parser.error("--requests: at least 100 (one batch of requests per read)")
    if shutil.which("valgrind") is None:
        print("error: valgrind not found (apt-get install valgrind)", file=sys.stderr)
        return 2
    for name in args.benchmarks or BENCHMARKS:
        print(f"{name}: {per_request(name, args.requests):,.0f} instructions per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
