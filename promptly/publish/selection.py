"""Which run to publish, and the evaluation it is judged by.

A training run folder links to its evaluations through `<run>/evaluations.jsonl`: `promptly eval run_dir=<run>`
appends one line per evaluation (report folder, report.json, split, examples, metrics, checkpoint, time).
Publishing reads the newest line, so the version carries the numbers of the checkpoint that was evaluated.
With `publish.only_if_better`, that evaluation must beat the active version's recorded metrics
(`compare_with_active`), so an automated retrain never replaces a better served model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptly.errors import ConfigError, InputNotFoundError
from promptly.metrics_catalog import Mode, base_name, is_better
from promptly.metrics_catalog import mode as metric_mode
from promptly.store.base import ModelVersion
from promptly.utils.results import RESULT_FILE, RunResult, find_results, read_result

EVALUATIONS_FILE = "evaluations.jsonl"
EVAL_PREFIX = "eval/"


@dataclass(frozen=True)
class Evaluation:
    """One line of <run>/evaluations.jsonl, with the overall metrics of the report it points at."""

    report_dir: Path
    """The `promptly eval` run folder (report.md, plots)."""
    report_json: Path
    """Its report.json: the record the model card's table is read from."""
    split: str
    examples: int
    metrics: dict[str, float]
    """The report's `overall` metrics (bleu, faithfulness, recall@k...)."""
    checkpoint: str | None
    """The checkpoint that was evaluated: the weights a version of this run is exported from."""
    created_at: str = ""


@dataclass(frozen=True)
class Candidate:
    """A training run that may be published, with the metrics it can be ranked by."""

    run_dir: Path
    result: RunResult | None
    evaluation: Evaluation | None
    metrics: dict[str, float] = field(default_factory=dict)
    """The run's result.json metrics, and its newest evaluation's as eval/<name>."""


def read_evaluations(run_dir: Path) -> list[Evaluation]:
    """Every evaluation recorded in a run folder, oldest first (a line that does not parse is an error)."""
    path = run_dir / EVALUATIONS_FILE
    if not path.is_file():
        return []
    found = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            found.append(_evaluation(json.loads(line), run_dir))
        except (ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"{path}:{number} is not an evaluation record ({type(err).__name__}: {err})") from None
    return found


def _evaluation(data: dict[str, Any], run_dir: Path) -> Evaluation:
    report_json = Path(data["report_json"])
    report_dir = Path(data.get("report_dir") or report_json.parent)
    metrics = {str(k): float(v) for k, v in (data.get("metrics") or {}).items() if v is not None}
    if report_json.is_file():  # the report is the record; the line's copy is for when it was moved
        overall = json.loads(report_json.read_text(encoding="utf-8")).get("overall") or {}
        metrics = {str(k): float(v) for k, v in overall.items() if v is not None}
    return Evaluation(report_dir=report_dir, report_json=report_json, split=str(data.get("split", "")),
                      examples=int(data.get("examples") or 0), metrics=metrics,
                      checkpoint=data.get("checkpoint"), created_at=str(data.get("created_at", "")))


def newest_evaluation(run_dir: Path) -> Evaluation:
    """The evaluation a version of this run is judged by; a run without one is refused."""
    evaluations = read_evaluations(run_dir)
    if not evaluations:
        raise InputNotFoundError(f"run {run_dir} has no evaluation ({EVALUATIONS_FILE}): run "
                                 f"`promptly eval run_dir={run_dir}` first")
    newest = evaluations[-1]
    if not newest.report_json.is_file():
        raise InputNotFoundError(f"run {run_dir}'s newest evaluation points at {newest.report_json}, which is gone: "
                                 f"evaluate it again with `promptly eval run_dir={run_dir}`")
    return newest


def candidate(run_dir: Path) -> Candidate:
    """A run folder as a candidate (its result.json may be missing when it was copied by hand)."""
    result = read_result(run_dir / RESULT_FILE) if (run_dir / RESULT_FILE).is_file() else None
    evaluations = read_evaluations(run_dir)
    evaluation = evaluations[-1] if evaluations else None
    metrics = dict(result.metrics) if result else {}
    if evaluation is not None:
        metrics.update({f"{EVAL_PREFIX}{k}": v for k, v in evaluation.metrics.items()})
    return Candidate(run_dir, result, evaluation, metrics)


def metric_of(c: Candidate, metric: str) -> float | None:
    """The candidate's value of `metric`; a bare evaluation name (faithfulness) reads eval/faithfulness."""
    value = c.metrics.get(metric)
    if value is None and "/" not in metric:
        value = c.metrics.get(EVAL_PREFIX + base_name(metric))
    return value if value is not None and math.isfinite(value) else None


def best_run(root: Path, metric: str | None = None, mode: str = "auto") -> tuple[Candidate, str, Mode]:
    """The best training run under `root` (a folder of runs or a multirun) by `metric` and its direction.

    Only finished runs count; `metric` defaults to the runs' optimized_metric. Returns the winner, the
    metric and the direction it was ranked by.
    """
    if not root.is_dir():
        raise InputNotFoundError(f"publish.runs_dir={root} does not exist: point it at a folder of training runs")
    found = [(path, r) for path, r in find_results(root) if r.task_name == "train"]
    chosen_metric = metric or next((r.optimized_metric for _, r in found if r.optimized_metric), None)
    if not found:
        raise InputNotFoundError(f"no training run under publish.runs_dir={root} (a run leaves a {RESULT_FILE})")
    if not chosen_metric:
        raise ConfigError("the runs name no optimized_metric: set publish.metric")
    direction = metric_mode(chosen_metric, mode)
    ranked = []
    for path, _ in found:
        c = candidate(path)
        value = metric_of(c, chosen_metric)
        if c.result is not None and c.result.status == "ok" and value is not None:
            ranked.append((value, str(path), c))
    if not ranked:
        raise InputNotFoundError(f"no finished run under {root} has a value of {chosen_metric!r}"
                                 + (" (evaluation metrics need `promptly eval run_dir=<run>`)"
                                    if chosen_metric.startswith(EVAL_PREFIX) or "/" not in chosen_metric else ""))
    sign = -1.0 if direction == "max" else 1.0
    ranked.sort(key=lambda item: (sign * item[0], item[1]))
    return ranked[0][2], chosen_metric, direction


def latest_run(runs_dir: Path) -> Path:
    """The newest training run folder (by its result.json) under runs_dir."""
    found = [path for path, r in find_results(runs_dir) if r.task_name == "train"] if runs_dir.is_dir() else []
    if not found:
        raise InputNotFoundError(f"run_dir=latest: no training run under publish.runs_dir={runs_dir}")
    return max(found, key=lambda p: (p / RESULT_FILE).stat().st_mtime)


def resolve_run(run_dir: str | None, runs_dir: str, metric: str | None, mode: str
                ) -> tuple[Candidate, str | None, Mode | None]:
    """The run to publish: the one named, the newest (`latest`), or the best under runs_dir."""
    if run_dir:
        path = latest_run(Path(runs_dir)) if run_dir == "latest" else Path(run_dir).expanduser()
        if not (path / "config.yaml").is_file():
            raise InputNotFoundError(f"run_dir={run_dir} is not a `promptly train` run folder (no config.yaml)")
        return candidate(path), None, None
    return best_run(Path(runs_dir).expanduser(), metric, mode)


@dataclass(frozen=True)
class Verdict:
    """Whether a run's evaluation beats the active version on one evaluation metric."""

    better: bool
    metric: str
    """The metric compared, without its stage prefix (as in the report and the version's row)."""
    mode: Mode
    candidate: float
    incumbent: float | None
    """The active version's value; None when no version is active or its row lacks the metric."""
    incumbent_version: str | None
    reason: str


def compare_with_active(evaluation: Evaluation, active: ModelVersion | None, metric: str | None,
                        mode: str = "auto") -> Verdict:
    """Compare the run's newest evaluation with the active version's metrics, in the metric's declared
    direction (ties keep the active version). Nothing to compare with (no active version, or one recorded
    without this metric) counts as better, so the first automated publish can happen."""
    if not metric:
        raise ConfigError("publish.only_if_better needs the metric to compare: publish.metric=eval/<name> "
                          "(e.g. eval/rougeL)")
    if "/" in metric and not metric.startswith(EVAL_PREFIX):
        raise ConfigError(f"publish.only_if_better compares evaluation metrics (what a version records), not "
                          f"{metric!r}: use publish.metric=eval/<name>")
    name, direction = base_name(metric), metric_mode(metric, mode)
    value = evaluation.metrics.get(name)
    if value is None or not math.isfinite(value):
        raise ConfigError(f"the run's evaluation has no {name!r} (it has {sorted(evaluation.metrics)}): choose "
                          "publish.metric among them")
    if active is None:
        return Verdict(True, name, direction, value, None, None, "no version is active yet")
    label = f"{active.repo_id} {active.version}"
    incumbent = active.metrics.get(name)
    if not isinstance(incumbent, int | float) or not math.isfinite(incumbent):
        return Verdict(True, name, direction, value, None, label,
                       f"the active version {label} recorded no {name}: nothing to beat")
    better = is_better(direction, value, float(incumbent))
    word = "beats" if better else "does not beat"
    return Verdict(better, name, direction, value, float(incumbent), label,
                   f"{name} {value:.4g} {word} the active version {label}'s {float(incumbent):.4g} ({direction})")
