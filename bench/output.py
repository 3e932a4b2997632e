"""Write one run's results: Markdown on stdout and in --out, JSON with everything, the chart."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import chart, h2load, machine
from bench.options import Options
from bench.report import summarize, tables
from bench.runner import Outcome

RESULTS = Path(__file__).resolve().parent / "results"


def _free_name(directory: Path, stem: str, suffix: str) -> Path:
    """``stem.suffix``, else ``stem-2.suffix`` and so on: a same-day rerun keeps the first."""
    path, i = directory / f"{stem}{suffix}", 2
    while path.exists():
        path, i = directory / f"{stem}-{i}{suffix}", i + 1
    return path


def _scenario_json(opts: Options) -> list[dict[str, Any]]:
    return [
        {
            "name": sc.name,
            "description": sc.description,
            "metric": sc.metric,
            "load": asdict(sc.load(opts.quick, slow=False)),
            "slow_n": None if opts.quick else sc.slow_n,
            "headers": list(sc.headers),
        }
        for sc in opts.scenarios
    ]


def write_all(outcome: Outcome, opts: Options) -> bool:
    """Write everything; return True if any run failed (the table says which and why)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(outcome.started_at))
    host = machine.info()
    header = {
        **host,
        "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(outcome.started_at)),
        "h2load": h2load.version(),
    }
    cells = summarize(outcome.records, opts.reference)
    markdown = tables(outcome, cells, opts, header)

    opts.out.mkdir(parents=True, exist_ok=True)
    md_path = opts.out / f"results-{stamp}.md"
    json_path = opts.out / f"results-{stamp}.json"
    png_path = opts.out / f"results-{stamp}.png"
    notes = list(outcome.notes)
    if opts.chart:
        note = chart.draw(
            cells,
            opts.protos,
            [s.name for s in opts.scenarios],
            [s.name for s in opts.servers],
            png_path,
        )
        if note:
            notes.append(note)
            print(note, file=sys.stderr)
    md_path.write_text(markdown)
    document = {
        "schema": 1,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(outcome.started_at)),
        "seconds": outcome.seconds,
        "load_average_1min": {"before": outcome.load_before, "after": outcome.load_after},
        "command": [sys.executable, "-m", "bench", *sys.argv[1:]],
        "machine": host,
        "versions": {
            "h2load": header["h2load"],
            **{n: i.get("version") for n, i in outcome.servers.items()},
        },
        "options": {
            "quick": opts.quick,
            "rounds": opts.rounds,
            "protos": opts.protos,
            "reference": opts.reference,
            "run_timeout": opts.run_timeout,
            "budget": opts.budget,
            "pinned": {
                "server_cpus": sorted(opts.server_cpus or ()),
                "client_cpus": sorted(opts.client_cpus or ()),
            },
            "data": str(opts.data),
        },
        "scenarios": _scenario_json(opts),
        "servers": outcome.servers,
        "summary": [c.as_dict() for c in cells],
        "records": [asdict(r) for r in outcome.records],
        "raw_references": outcome.raw,
        "notes": notes,
        "files": {"markdown": str(md_path), "png": str(png_path) if png_path.exists() else None},
    }
    json_path.write_text(json.dumps(document, indent=1, default=str) + "\n")

    print(markdown)
    print(f"wrote {json_path}, {md_path}" + (f", {png_path}" if png_path.exists() else ""))
    if opts.save_table:
        RESULTS.mkdir(exist_ok=True)
        saved = _free_name(RESULTS, f"{time.strftime('%Y-%m-%d')}-{host['hostname']}", ".md")
        saved.write_text(markdown)
        print(f"saved the table as {saved}")
    return any(r.status == "failed" for r in outcome.records)
