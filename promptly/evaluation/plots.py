"""PNG plots for evaluation reports, drawn on matplotlib's Agg canvas (no display, no pyplot state)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

UNBOUNDED = frozenset({"perplexity"})
"""Metrics not on a 0-1 scale: left out of the bar plots (their values are in the tables)."""


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _bounded(metrics: Sequence[str]) -> list[str]:
    return [m for m in metrics if m not in UNBOUNDED]


def plot_metric_bars(overall: Mapping[str, float], path: Path, title: str = "Overall metrics") -> Path:
    """One bar per 0-1 metric, value printed on top; unbounded metrics (perplexity) go in the title."""
    names = _bounded(list(overall))
    fig = _figure(max(6.0, 0.7 * len(names) + 2), 4.0)
    ax = fig.add_subplot()
    values = [overall[n] for n in names]
    bars = ax.bar(range(len(names)), values, color="#4C72B0")
    ax.bar_label(bars, labels=[f"{v:.3f}" for v in values], fontsize=8, padding=2)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("score (0-1)")
    extra = ", ".join(f"{n} = {overall[n]:.3g}" for n in overall if n in UNBOUNDED)
    ax.set_title(f"{title} ({extra})" if extra else title)
    fig.savefig(path)
    return path


def plot_distributions(per_example: Sequence[Mapping[str, Any]], metrics: Sequence[str], path: Path) -> Path:
    """Per-example scores of each 0-1 metric: a box (quartiles) over the individual points, one row each.

    One axes for all metrics keeps the plot readable and cheap to draw for any number of metrics.
    """
    names = [m for m in _bounded(metrics) if any(row["scores"].get(m) is not None for row in per_example)]
    columns = [[float(row["scores"][m]) for row in per_example if row["scores"].get(m) is not None]
               for m in names]
    fig = _figure(8.0, max(2.5, 0.42 * len(names) + 1.2))
    ax = fig.add_subplot()
    if names:
        ax.boxplot(columns, orientation="horizontal", widths=0.6, showfliers=False)
        for i, values in enumerate(columns, 1):
            jitter = [i + 0.22 * math.sin(7.0 * k) for k in range(len(values))]  # deterministic spread
            ax.scatter(values, jitter, s=9, alpha=0.5, color="#55A868", zorder=3)
        ax.set_yticks(range(1, len(names) + 1), [f"{n} (mean {sum(v) / len(v):.3f})" for n, v in
                                                 zip(names, columns, strict=True)], fontsize=8)
        ax.invert_yaxis()
    else:
        ax.text(0.5, 0.5, "no per-example scores", ha="center", va="center")
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("per-example score")
    ax.set_title(f"Per-example score distributions (n = {len(per_example)})")
    fig.savefig(path)
    return path


def plot_comparison(runs: Mapping[str, Mapping[str, float]], metrics: Sequence[str], path: Path) -> Path:
    """Grouped bars: one group per 0-1 metric, one bar per run (missing values drawn as gaps)."""
    names = _bounded(metrics)
    fig = _figure(max(7.0, 0.4 * len(names) * max(1, len(runs)) + 3), 4.2)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(runs))
    for j, (run, overall) in enumerate(runs.items()):
        xs = [i + (j - (len(runs) - 1) / 2) * width for i in range(len(names))]
        ax.bar(xs, [overall.get(n, math.nan) for n in names], width=width, label=run)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score (0-1)")
    ax.set_title("Runs compared")
    ax.legend(fontsize=8)
    fig.savefig(path)
    return path
