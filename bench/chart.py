"""A PNG of the medians: servers side by side per scenario, one panel per protocol.

matplotlib is optional (the ``bench`` extra); without it the run still writes table and JSON.
"""

from __future__ import annotations

from pathlib import Path

from bench.report import Cell


def draw(
    cells: list[Cell], protos: list[str], scenarios: list[str], servers: list[str], path: Path
) -> str | None:
    """Write the chart to ``path``; return a note instead when it cannot."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display here; must precede pyplot's import
        import matplotlib.pyplot as plt
    except ImportError:
        return "chart skipped: matplotlib not installed (pip install matplotlib)"
    by_key = {(c.proto, c.scenario, c.server): c for c in cells}
    shown = [s for s in servers if any(k[2] == s and c.median for k, c in by_key.items())]
    if not shown:
        return "chart skipped: no successful runs"
    size = (max(8.0, 1.6 * len(scenarios)), 4.5 * len(protos))
    fig, axes = plt.subplots(len(protos), 1, figsize=size, squeeze=False)
    width = 0.8 / len(shown)
    cmap = plt.get_cmap("tab20")
    for ax, proto in zip(axes[:, 0], protos, strict=True):
        for i, server in enumerate(shown):
            xs, ys = [], []
            for j, sc in enumerate(scenarios):
                cell = by_key.get((proto, sc, server))
                if cell is not None and cell.median:
                    xs.append(j + (i - (len(shown) - 1) / 2) * width)
                    ys.append(cell.median)
            ax.bar(xs, ys, width, label=server, color=cmap(i % 20))
        units = {c.scenario: c.metric for c in cells}
        ax.set_xticks(range(len(scenarios)))
        ax.set_xticklabels([f"{s}\n({units.get(s, '')})" for s in scenarios])
        ax.set_yscale("log")
        ax.set_title(f"{proto}: medians (MB/s = 2^20 B/s; higher is better)")
        ax.grid(axis="y", which="both", alpha=0.3)
    # Beside the first panel, not over the bars.
    axes[0, 0].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
