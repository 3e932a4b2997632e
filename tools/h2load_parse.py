"""Parse the summary h2load (nghttp2) prints into numbers.

Importable (``parse(text) -> dict``) and runnable: ``h2load ... | python tools/h2load_parse.py``
prints the parsed figures as JSON.

Units: h2load scales sizes and rates by powers of 1024 while writing "KB", "MB", "GB"; this module
keeps that convention, so ``mb_per_s`` is 2**20 bytes per second, the same unit as the "MB/s"
h2load prints. Rates are recomputed from the exact byte count it prints beside the rounded one,
over the most precise duration the output allows, because the printed rate has only two decimals
("2.31GB/s" is +-0.2 %) and a one-request run prints "0.97 req/s".
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

# h2load's size prefixes (util::utos_funit): binary multiples written without the "i".
_PREFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
_DURATION_UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0}

_FINISHED = re.compile(
    r"^finished in (?P<dur>[\d.]+)(?P<dunit>us|ms|s), (?P<rps>[\d.]+) req/s, "
    r"(?P<rate>[\d.]+)(?P<rprefix>[KMG]?)B/s",
    re.M,
)
_REQUESTS = re.compile(
    r"^requests: (?P<total>\d+) total, (?P<started>\d+) started, (?P<done>\d+) done, "
    r"(?P<succeeded>\d+) succeeded, (?P<failed>\d+) failed, (?P<errored>\d+) errored"
    r"(?:, (?P<timeout>\d+) timeout)?",
    re.M,
)
_STATUS = re.compile(r"^status codes: (?P<codes>.*)$", re.M)
_STATUS_ITEM = re.compile(r"(\d+) ([1-5]xx)")
_TRAFFIC = re.compile(
    r"^traffic: [\d.]+[KMG]?B \((?P<total>\d+)\) total, [\d.]+[KMG]?B \((?P<headers>\d+)\) "
    r"headers.*?, [\d.]+[KMG]?B \((?P<data>\d+)\) data",
    re.M,
)
_PROTOCOL = re.compile(r"^Application protocol: (?P<proto>\S+)", re.M)


def _int_groups(match: re.Match[str] | None, names: tuple[str, ...]) -> dict[str, int | None]:
    if match is None:
        return dict.fromkeys(names)
    return {n: (int(v) if (v := match.group(n)) is not None else None) for n in names}


def _best_seconds(
    printed_s: float, dur_digits: float, rps: float, succeeded: int | None
) -> tuple[float, str]:
    """Pick the duration with the smallest rounding error.

    h2load computes req/s as succeeded / seconds and prints both with two decimals, so
    seconds = succeeded / req/s is exact to 0.005 / req/s relative, which beats the printed
    duration ("1.02s") whenever req/s is larger than the duration's printed digits.
    """
    dur_rel = 0.005 / dur_digits if dur_digits > 0 else float("inf")
    rps_rel = 0.005 / rps if rps > 0 else float("inf")
    if succeeded and rps_rel < dur_rel:
        return succeeded / rps, "succeeded/req_per_s"
    return printed_s, "printed duration"


def parse(text: str) -> dict[str, Any]:
    """Return h2load's summary as a dict; absent figures are None, ``complete`` says if any."""
    out: dict[str, Any] = {"complete": False}
    m = _PROTOCOL.search(text)
    out["protocol"] = m.group("proto") if m else None

    req = _REQUESTS.search(text)
    out["requests"] = _int_groups(
        req, ("total", "started", "done", "succeeded", "failed", "errored", "timeout")
    )
    status: dict[str, int] = {}
    if (sm := _STATUS.search(text)) is not None:
        status = {k: int(n) for n, k in _STATUS_ITEM.findall(sm.group("codes"))}
    out["status"] = status

    tr = _TRAFFIC.search(text)
    traffic = _int_groups(tr, ("total", "headers", "data"))
    out["traffic_bytes"] = traffic["total"]
    out["header_bytes"] = traffic["headers"]
    out["data_bytes"] = traffic["data"]

    fin = _FINISHED.search(text)
    if fin is None:
        out.update(seconds=None, req_per_s=None, printed_rate=None, mb_per_s=None)
        return out
    dur_digits = float(fin.group("dur"))
    printed_s = dur_digits * _DURATION_UNIT[fin.group("dunit")]
    rps = float(fin.group("rps"))
    printed_bps = float(fin.group("rate")) * _PREFIX[fin.group("rprefix")]
    out["printed_duration"] = fin.group("dur") + fin.group("dunit")
    out["printed_rate"] = fin.group("rate") + fin.group("rprefix") + "B/s"
    out["req_per_s"] = rps

    seconds, source = _best_seconds(printed_s, dur_digits, rps, out["requests"]["succeeded"])
    out["seconds"] = seconds
    out["seconds_from"] = source
    total = traffic["total"]
    if total is not None and seconds > 0:
        out["mb_per_s"] = total / seconds / _PREFIX["M"]
    else:
        # No exact byte count: fall back to the rounded printed rate.
        out["mb_per_s"] = printed_bps / _PREFIX["M"]
    out["complete"] = req is not None
    return out


def main() -> int:
    json.dump(parse(sys.stdin.read()), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
