"""The bias report: bias_report.json (everything), bias_report.md (per-axis tables, flags, the data
balance, the lowest-scored answers) and bias_scores.png (mean score per group, one panel per axis).

The JSON is the record; the Markdown and the plot are views of it. Both open with the judge's verdict
(`judge_calibrated` and its one-sentence reason, promptly/bias/calibration.py), and the Markdown leads
with the measurements that need no judge (answer divergence, refusal gaps, data balance): when the judge
cannot tell a biased answer from a fair one, its scores come last, under a heading that says so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from promptly.bias.calibration import Calibration
from promptly.bias.scoring import ProbeResult
from promptly.evaluation.plots import _figure
from promptly.evaluation.report import settings_table
from promptly.utils.markdown import markdown_table

WORST_ANSWERS = 5


@dataclass(frozen=True)
class BiasReportFiles:
    json: Path
    markdown: Path
    plot: Path


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def axes_markdown(axes: Mapping[str, Any]) -> str:
    """One table per axis: each group's mean score, answers, unscored and refusal rate."""
    parts = []
    for name, axis in axes.items():
        flag = " **FLAGGED**: " + "; ".join(axis["reasons"]) if axis["flagged"] else ""
        parts.append(f"#### {name}{flag}\n\nlargest gap {_fmt(axis['gap'])} (lowest: {axis['lowest_group']}, "
                     f"highest: {axis['highest_group']}); answer divergence {_fmt(axis['divergence'], 3)}; "
                     f"refusal-rate gap {_fmt(axis['refusal_gap'])}\n")
        rows = [(g, _fmt(v["mean_score"]), v["answers"], v["unscored"], f"{v['refusal_rate']:.0%}")
                for g, v in axis["groups"].items()]
        parts.append(markdown_table(["group", "mean score", "answers", "unscored", "refusal rate"], rows,
                                    align="lrrrr") + "\n")
    return "\n".join(parts)


JUDGE_FREE = ("bias_divergence", "bias_refusal_gap", "data_max_share")
"""Headline figures that no judge produced: they lead the report."""


def judge_free_markdown(axes: Mapping[str, Any]) -> str:
    """Per axis: how far answers to swapped questions diverge, and the refusal rates per group."""
    rows = [(name, _fmt(axis["divergence"], 3), _fmt(axis["refusal_gap"]),
             ", ".join(f"{g} {v['refusal_rate']:.0%}" for g, v in axis["groups"].items()))
            for name, axis in axes.items()]
    return markdown_table(["axis", "answer divergence", "refusal-rate gap", "refusal rate per group"], rows,
                          align="lrrl") + "\n"


def plot_scores(axes: Mapping[str, Any], top: int, path: Path) -> Path:
    """Mean rubric score per group, one panel per axis; flagged axes titled in red."""
    names = list(axes)
    cols = min(3, max(1, len(names)))
    rows = math.ceil(len(names) / cols) or 1
    fig = _figure(4.2 * cols, 3.2 * rows)
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        groups = axes[name]["groups"]
        labels = list(groups)
        values = [groups[g]["mean_score"] or 0.0 for g in labels]
        bars = ax.bar(range(len(labels)), values, color="#4C72B0")
        ax.bar_label(bars, labels=[_fmt(groups[g]["mean_score"]) for g in labels], fontsize=7, padding=1)
        ax.set_xticks(range(len(labels)), labels, rotation=40, ha="right", fontsize=7)
        ax.set_ylim(0, top + 0.4)
        ax.set_ylabel("mean score", fontsize=8)
        flagged = axes[name]["flagged"]
        ax.set_title(f"{name} (gap {_fmt(axes[name]['gap'])})", fontsize=9, color="#C44E52" if flagged else "black")
    fig.savefig(path)
    return path


def write_bias_report(out_dir: Path, summary: Mapping[str, Any], results: Sequence[ProbeResult],
                      settings: Mapping[str, Any], balance: Mapping[str, Any] | None, balance_markdown: str | None,
                      rubric: Mapping[str, Any], calibration: Calibration | None = None) -> BiasReportFiles:
    """Write the three files into `out_dir`; returns their paths. Without a calibration the judge counts
    as uncalibrated."""
    out_dir.mkdir(parents=True, exist_ok=True)
    calibration = calibration or Calibration(judge=str(settings.get("judge")), source="(none)",
                                             error="no calibration was run")
    trusted = calibration.calibrated
    record = {"judge_calibrated": trusted, "verdict": calibration.headline(), "settings": dict(settings),
              "rubric": dict(rubric), "overall": summary["overall"], "thresholds": summary["thresholds"],
              "axes": summary["axes"], "data_balance": balance, "calibration": calibration.to_dict(),
              "probes": [asdict(r) for r in results]}
    json_path = out_dir / "bias_report.json"
    json_path.write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")
    plot = plot_scores(summary["axes"], len(rubric.get("scores", ())) or 5, out_dir / "bias_scores.png")
    overall = summary["overall"]
    flagged = [a for a, v in summary["axes"].items() if v["flagged"]]
    top = len(rubric.get("scores", ())) or 5
    lines = [f"# Bias report: {settings.get('name', 'model')}", "", f"**{calibration.headline()}**", ""]
    if not trusted:
        lines += ["Read the measurements that need no judge first; the judge's rubric scores below are shown "
                  "for completeness, not as findings.", ""]
    lines += ["## Measurements that need no judge", "",
              markdown_table(["metric", "value"], [(k, _fmt(overall.get(k), 3)) for k in JUDGE_FREE if k in overall],
                             align="lr")]
    lines += ["", judge_free_markdown(summary["axes"])]
    if balance_markdown:
        lines += ["### Data balance", "", balance_markdown]
    lines += ["## Judge calibration", "", calibration.markdown(), ""]
    heading = "## Judge scores" if trusted else "## Judge scores (not evidence: the judge is not calibrated)"
    lines += [heading, "", f"Rubric **{rubric.get('name')}** (1-{top}), judged by `{settings.get('judge')}`. "
              f"Flagged axes: {', '.join(flagged) if flagged else 'none'}.", "",
              markdown_table(["metric", "value"], [(k, _fmt(v, 3)) for k, v in overall.items() if k not in JUDGE_FREE],
                             align="lr")]
    lines += ["", "![mean score per group](bias_scores.png)", "", "### Axes", "", axes_markdown(summary["axes"])]
    scored = sorted((r for r in results if r.score is not None), key=lambda r: (r.score, r.axis, r.group))
    if scored:
        lines += ["### Lowest-scored answers", ""]
        for r in scored[:WORST_ANSWERS]:
            lines += [f"- **{r.axis} / {r.group}**, score {r.score:.2f}: {r.question}",
                      f"  > {' '.join(r.answer.split())[:400] or '(empty)'}"]
        lines.append("")
    unscored = [r for r in results if r.score is None]
    if unscored:
        lines += [f"### Unscored answers ({len(unscored)})", ""]
        lines += [f"- {r.axis} / {r.group}: {r.error}" for r in unscored[:10]] + [""]
    lines += ["## Settings", "", settings_table(settings)]
    md_path = out_dir / "bias_report.md"
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return BiasReportFiles(json=json_path, markdown=md_path, plot=plot)
