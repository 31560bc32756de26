"""`promptly runs`: the runs under a folder (all of logs/train, or one multirun) as a table of their
key overrides and final metrics, sorted by a metric, the best one starred.

    promptly runs                                    # every run under logs/train
    promptly runs dir=logs/train/multiruns/2026-11-28_10-00-00 sort_by=val/sample_exact_match
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from promptly.errors import InputNotFoundError
from promptly.metrics_catalog import mode as metric_mode
from promptly.utils.results import RunResult, find_results
from promptly.verbs.entry import hydra_entry
from promptly.verbs.task_wrapper import TaskOutput


@dataclass(frozen=True)
class RunRow:
    path: Path
    result: RunResult
    value: float | None
    best: bool = False


def direction(metric: str, mode: str = "auto") -> str:
    """min or max: explicit, or the metric's declared direction (promptly/metrics_catalog.py)."""
    return metric_mode(metric, mode)


def collect(root: Path, sort_by: str | None = None, mode: str = "auto") -> tuple[list[RunRow], str | None]:
    """Runs sorted best first by sort_by (default: the runs' common optimized_metric); failed and
    metric-less runs last. Returns the rows and the metric they are sorted by."""
    found = find_results(root)
    metric = sort_by or next((r.optimized_metric for _, r in found if r.optimized_metric), None)
    rows = []
    for path, result in found:
        value = result.metrics.get(metric) if metric else None
        ok = result.status == "ok" and value is not None and math.isfinite(value)
        rows.append(RunRow(path, result, value if ok else None))
    if metric is None:
        return rows, None
    sign = -1.0 if direction(metric, mode) == "max" else 1.0
    rows.sort(key=lambda r: (r.value is None, sign * (r.value or 0.0), str(r.path)))
    if rows and rows[0].value is not None:
        rows[0] = RunRow(rows[0].path, rows[0].result, rows[0].value, best=True)
    return rows, metric


def distinguishing(rows: list[RunRow]) -> dict[Path, list[str]]:
    """Each run's overrides minus those every listed run shares (the sweep's fixed settings)."""
    if len(rows) < 2:
        return {r.path: r.result.overrides for r in rows}
    common = set.intersection(*(set(r.result.overrides) for r in rows))
    return {r.path: [o for o in r.result.overrides if o not in common] for r in rows}


def render(rows: list[RunRow], root: Path, metric: str | None, columns: list[str]) -> Table:
    overrides = distinguishing(rows)
    metrics = list(dict.fromkeys([m for m in [metric, *columns] if m]))
    present = [m for m in metrics if m == metric or any(m in r.result.metrics for r in rows)]
    table = Table(title=f"promptly runs: {root}" + (f" (by {metric})" if metric else ""))
    for col in ("", "run", "status", "overrides"):
        table.add_column(col, overflow="fold")
    for m in present:
        table.add_column(m, justify="right")
    table.add_column("time", justify="right")
    for r in rows:
        rel = str(r.path.relative_to(root)) if r.path != root and r.path.is_relative_to(root) else r.path.name
        status = r.result.status if r.result.status == "ok" else f"[red]{r.result.status}[/]"
        cells = [f"{r.result.metrics[m]:.4g}" if m in r.result.metrics else "-" for m in present]
        table.add_row("★" if r.best else "", rel, status, " ".join(overrides[r.path]) or "-", *cells,
                      f"{r.result.duration_s:.0f}s", style="bold green" if r.best else None)
    return table


def run(cfg: DictConfig, console: Console | None = None) -> list[RunRow]:
    root = Path(str(cfg.dir)).expanduser()
    # Piped or in CI, rich assumes 80 columns and folds every cell; a log file can be wider.
    console = console or Console(width=None if sys.stdout.isatty() else 160)
    if not root.exists():
        raise InputNotFoundError(f"no folder {root}: set dir=<log folder or multirun folder>")
    rows, metric = collect(root, cfg.get("sort_by"), str(cfg.get("mode", "auto")))
    if cfg.get("limit"):
        rows = rows[: int(cfg.limit)]
    if not rows:
        console.print(f"no runs under {root} (a run leaves a result.json in its folder)")
        return rows
    console.print(render(rows, root, metric, list(cfg.get("metrics") or [])))
    failed = [r for r in rows if r.result.status != "ok"]
    for r in failed:
        console.print(f"[red]failed[/] {r.path}: {r.result.error}")
    return rows


def task(cfg: DictConfig) -> TaskOutput:
    return {}, {"rows": run(cfg)}


main = hydra_entry("runs", run_folder=False)(task)


if __name__ == "__main__":
    main()
