"""Medians, spreads and ratios per (protocol, scenario, server), and the Markdown tables."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from bench.options import Options
from bench.runner import Outcome, Record
from bench.scenarios import Scenario

PROTO_TITLE = {
    "h2c": "h2c (cleartext, prior knowledge)",
    "tls": "TLS (h2 by ALPN)",
    "h1": "HTTP/1.1 (cleartext, h2load --h1)",
}
SUBJECT = "h2stream"


@dataclass
class Cell:
    proto: str
    scenario: str
    server: str
    metric: str
    values: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    # (round, reason) of each round that did not count.
    failures: list[tuple[int, str]] = field(default_factory=list)
    n: int | None = None
    ratio_ref: float | None = None
    ratio_subject: float | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    def as_dict(self) -> dict[str, Any]:
        med = self.median
        return {
            "proto": self.proto,
            "scenario": self.scenario,
            "server": self.server,
            "metric": self.metric,
            "median": med,
            "min": min(self.values) if self.values else None,
            "max": max(self.values) if self.values else None,
            "cpu_s_median": statistics.median(self.cpu) if self.cpu else None,
            "peak_rss_mib_median": statistics.median(self.rss) if self.rss else None,
            "ok_rounds": len(self.values),
            "failed_rounds": len(self.failures),
            "failures": [f"round {r}: {why}" for r, why in self.failures],
            "n": self.n,
            "ratio_vs_reference": self.ratio_ref,
            "ratio_vs_h2stream": self.ratio_subject,
        }


def summarize(records: list[Record], reference: str) -> list[Cell]:
    """Group the rounds; skipped-only groups are left out (their reason is in the notes)."""
    cells: dict[tuple[str, str, str], Cell] = {}
    for r in records:
        if r.status == "skipped":
            continue
        cell = cells.setdefault(
            (r.proto, r.scenario, r.server), Cell(r.proto, r.scenario, r.server, r.metric)
        )
        cell.n = r.n
        if r.status == "ok" and r.value is not None:
            cell.values.append(r.value)
            if r.cpu_s is not None:
                cell.cpu.append(r.cpu_s)
            if r.peak_rss_mib is not None:
                cell.rss.append(r.peak_rss_mib)
        else:
            cell.failures.append((r.round, r.reason + _log_hint(r.server_log)))
    for cell in cells.values():
        for name, attr in ((reference, "ratio_ref"), (SUBJECT, "ratio_subject")):
            other = cells.get((cell.proto, cell.scenario, name))
            mine, theirs = cell.median, other.median if other else None
            if mine is not None and theirs:
                setattr(cell, attr, mine / theirs)
    return list(cells.values())


def _log_hint(log: str, limit: int = 160) -> str:
    """The server's last log line of a failed run, which often names the cause."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return f" (server log: {lines[-1][-limit:]})" if lines else ""


def _num(x: float | None, digits: int = 0) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def _row(cell: Cell, sc: Scenario, full_n: int, opts: Options) -> str:
    d = cell.as_dict()
    name = cell.server + (" †" if cell.n is not None and cell.n != full_n else "")
    if cell.median is None:
        value, spread = "**FAILED**", "-"
    else:
        digits = 0 if cell.median >= 100 else 1
        value = f"{_num(cell.median, digits)} {sc.metric}"
        spread = f"{_num(d['min'], digits)}-{_num(d['max'], digits)}"
    ok = f"{len(cell.values)}/{len(cell.values) + len(cell.failures)}"
    if cell.failures:
        ok += " ‡"
    cols = [
        sc.name,
        name,
        value,
        spread,
        _num(d["cpu_s_median"], 2),
        _num(d["peak_rss_mib_median"], 1),
        _ratio(cell.ratio_ref),
        _ratio(cell.ratio_subject),
        ok,
    ]
    return "| " + " | ".join(cols) + " |"


def _pinned(opts: Options) -> str:
    if not opts.server_cpus:
        return ""
    return (
        f", --pin (servers on CPU {','.join(map(str, sorted(opts.server_cpus)))}, h2load on "
        f"CPU {','.join(map(str, sorted(opts.client_cpus or ())))})"
    )


def tables(outcome: Outcome, cells: list[Cell], opts: Options, header: dict[str, Any]) -> str:
    ref = opts.reference
    lines = [
        f"## h2load results, {header['date']} on {header['hostname']}",
        "",
        f"{header['cpu_model']}, {header['logical_cores']} cores, Linux {header['kernel']}, "
        f"Python {header['python']}, {header['h2load']}; {opts.rounds} round(s)"
        f"{', --quick (tiny files: not comparable with full runs)' if opts.quick else ''}"
        f"{_pinned(opts)}; "
        f"{outcome.seconds / 60:.1f} min. Load average (1 min) {outcome.load_before:.1f} "
        f"before the run, {outcome.load_after:.1f} after: above ~0.5 before, other work was "
        "sharing the 2 cores and every figure is noisier.",
        "",
        "Medians over rounds. MB/s = 2^20 bytes/s of h2load's total traffic, h2load's own "
        "(1024-based) unit; req/s as h2load reports. Spread = min-max over rounds. CPU s = the "
        "server's user+system seconds during one h2load run; RSS = its peak resident memory "
        f"in that run (all its processes). vs {ref} / vs {SUBJECT} = this median divided by "
        "theirs in the same scenario and protocol. ok = rounds that counted / rounds run.",
    ]
    by_key = {(c.proto, c.scenario, c.server): c for c in cells}
    server_order = [s.name for s in opts.servers]
    for proto in opts.protos:
        lines += ["", f"### {PROTO_TITLE.get(proto, proto)}", ""]
        lines.append(
            f"| Scenario | Server | Median | Spread | CPU s | RSS MiB "
            f"| vs {ref} | vs {SUBJECT} | ok |"
        )
        lines.append("|---|---|--:|--:|--:|--:|--:|--:|--:|")
        for sc in opts.scenarios:
            full_n = sc.load(opts.quick, slow=False, proto=proto).n
            for name in server_order:
                cell = by_key.get((proto, sc.name, name))
                if cell is not None:
                    lines.append(_row(cell, sc, full_n, opts))
    lines += _footnotes(outcome, cells, opts)
    lines += _raw_table(outcome)
    return "\n".join(lines) + "\n"


def _footnotes(outcome: Outcome, cells: list[Cell], opts: Options) -> list[str]:
    out = ["", "Notes:", ""]
    # Scenario -> (full -n, {reduced -n: [servers]}) for the † footnote.
    scaled: dict[str, tuple[int, dict[int, list[str]]]] = {}
    for sc in opts.scenarios:
        for c in cells:
            full = sc.load(opts.quick, slow=False, proto=c.proto).n
            if c.scenario == sc.name and c.n is not None and c.n != full:
                names = scaled.setdefault(sc.name, (full, {}))[1].setdefault(c.n, [])
                if c.server not in names:
                    names.append(c.server)
    for scenario, (full, reduced) in scaled.items():
        for n, names in reduced.items():
            out.append(
                f"- † {scenario}: {', '.join(names)} ran with -n {n:,} instead of {full:,}, "
                "to keep a full run near 20 minutes: req/s stays comparable."
            )
    for c in cells:
        if c.failures:
            out.append(f"- ‡ {c.server} {c.scenario} ({c.proto}): {_grouped(c.failures)}")
    for sc in opts.scenarios:
        flags = " ".join(sc.load(opts.quick, slow=False).flags())
        if sc.h1 is not None and "h1" in opts.protos:
            h1_flags = " ".join(sc.load(opts.quick, slow=False, proto="h1").flags())
            flags += f"`; HTTP/1.1: `--h1 {h1_flags}"
        out.append(f"- {sc.name}: {sc.description} (`{flags}`)")
    # Variants share their settings notes: print each text once, with every server it is for.
    by_text: dict[str, list[str]] = {}
    for name, info in outcome.servers.items():
        for note in info.get("notes", []):
            by_text.setdefault(note, []).append(name)
    for note, names in by_text.items():
        out.append(f"- {', '.join(names)}: {note}")
    seen = set()
    for note in outcome.notes:
        if note not in seen:
            seen.add(note)
            out.append(f"- {note}")
    return out


def _grouped(failures: list[tuple[int, str]]) -> str:
    """'rounds 1, 2: reason' once per distinct reason instead of one line per round."""
    rounds: dict[str, list[str]] = {}
    for r, why in failures:
        rounds.setdefault(why, []).append(str(r))
    parts = [
        f"round{'s' if len(rs) > 1 else ''} {', '.join(rs)}: {why}" for why, rs in rounds.items()
    ]
    return "; ".join(parts)


def _raw_table(outcome: Outcome) -> list[str]:
    if not outcome.raw:
        return []
    file = outcome.raw[0].get("file", "")
    out = [
        "",
        f"### Raw-socket references ({file} to a discarding Python reader, no HTTP/2)",
        "",
        "| Sender | Median MB/s | Spread | ok |",
        "|---|--:|--:|--:|",
    ]
    modes: dict[str, list[dict[str, Any]]] = {}
    for r in outcome.raw:
        modes.setdefault(r["mode"], []).append(r)
    labels = {
        "sendfile": "one os.sendfile of the whole file",
        "frames": "per 16 KiB: 9-byte header send(MSG_MORE) + os.sendfile",
        "copy": "os.preadv 256 KiB + sendall",
    }
    for mode, rows in modes.items():
        vals = [r["mb_per_s"] for r in rows if "mb_per_s" in r]
        med = _num(statistics.median(vals)) if vals else "FAILED"
        spread = f"{_num(min(vals))}-{_num(max(vals))}" if vals else "-"
        out.append(f"| {labels.get(mode, mode)} | {med} | {spread} | {len(vals)}/{len(rows)} |")
    return out
