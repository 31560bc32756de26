"""Evaluation reports: report.json (everything), report.md (headline, worst examples, settings), PNG plots.

The JSON is the record; the Markdown and plots are views of it, so `compare_reports` reads only JSON.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from promptly.evaluation import plots
from promptly.evaluation.metrics import EvalResult
from promptly.utils.markdown import markdown_table

ReportSource = EvalResult | Mapping[str, Any] | str | Path
"""A run to compare: a result, a loaded report.json, or the path to one (or to its folder)."""

METRIC_ORDER = (
    "bleu", "rouge1", "rouge2", "rougeL", "perplexity", "answer_relevance", "answer_relevance_judged",
    "coverage", "coverage_semantic", "coverage_lexical", "faithfulness",
)
DESCRIPTIONS = {
    "bleu": "corpus BLEU-4, sacreBLEU 13a, 0-1",
    "rouge1": "unigram F-measure vs reference",
    "rouge2": "bigram F-measure vs reference",
    "rougeL": "longest-common-subsequence F-measure",
    "perplexity": "exp(mean NLL of reference answer tokens); lower is better",
    "answer_relevance": "cosine(question, answer)",
    "answer_relevance_judged": "RAGAS-style: judge's questions from the answer vs the question",
    "coverage": "mean of semantic and lexical coverage",
    "coverage_semantic": "share of reference sentences matched by an answer sentence",
    "coverage_lexical": "share of reference content words in the answer",
    "faithfulness": "share of answer sentences supported by the retrieved context",
    "mrr": "mean reciprocal rank of the first gold chunk",
}
_CONTEXT_CHARS = 600


@dataclass(frozen=True)
class ReportFiles:
    """Where `write_report` put each file."""

    json: Path
    markdown: Path
    plots: list[Path] = field(default_factory=list)


def ordered_metrics(names: Sequence[str] | set[str]) -> list[str]:
    """Headline order: text overlap, perplexity, RAG answer metrics, retrieval, then anything else."""
    known = [m for m in METRIC_ORDER if m in names]
    recall = sorted((m for m in names if m.startswith("recall@")), key=lambda m: int(m.split("@")[1]))
    rest = [m for m in names if m not in known and m not in recall and m != "mrr"]
    return [*known, *recall, *(["mrr"] if "mrr" in names else []), *sorted(rest)]


def describe(metric: str) -> str:
    if metric.startswith("recall@"):
        return f"share of gold chunks in the top {metric.split('@')[1]} retrieved"
    return DESCRIPTIONS.get(metric, "")


def fmt(value: float | None) -> str:
    """Numbers in every table: 4 decimals, "n/a" for undefined."""
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def write_report(
    result: EvalResult, out_dir: str | Path, settings: Mapping[str, Any] | None = None, *,
    compare: Mapping[str, ReportSource] | None = None, name: str = "this run",
    title: str = "Evaluation report", worst_by: str = "coverage", n_worst: int = 5,
) -> ReportFiles:
    """Write report.json, report.md, metrics.png and distributions.png (and compare.png with `compare`).

    `settings` are the run's settings (model, checkpoint, retrieval k...), shown flattened in report.md.
    `compare` maps other runs' names to their reports, tabulated beside this one (called `name`).
    The worst examples are the lowest by `worst_by` (falling back to faithfulness, then rougeL).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"title": title, "settings": dict(settings or {}), **result.to_dict()}
    json_path = out / "report.json"
    text = json.dumps(payload, indent=2, ensure_ascii=False, default=str)
    json_path.write_text(text + "\n", encoding="utf-8")
    metrics = ordered_metrics(list(result.overall))
    plot_paths = [
        plots.plot_metric_bars({m: result.overall[m] for m in metrics}, out / "metrics.png"),
        plots.plot_distributions(result.per_example, metrics, out / "distributions.png"),
    ]
    sections = [f"# {title}\n", f"{len(result.per_example)} examples.\n", "## Headline metrics\n",
                headline_table(result.overall, result.per_example), "![Overall metrics](metrics.png)\n",
                "![Per-example score distributions](distributions.png)\n"]
    if compare:
        runs = {**{k: load_report(v) for k, v in compare.items()}, name: payload}
        sections += ["## Compared with other runs\n", comparison_table(runs),
                     "![Runs compared](compare.png)\n"]
        plot_paths.append(plots.plot_comparison({k: r["overall"] for k, r in runs.items()},
                                                _union_metrics(runs), out / "compare.png"))
    sections += worst_examples(result.per_example, worst_by, n_worst)
    sections += ["## Settings\n", settings_table({"run": payload["settings"], "metrics": result.config})]
    md_path = out / "report.md"
    md_path.write_text("\n".join(sections), encoding="utf-8")
    return ReportFiles(json_path, md_path, plot_paths)


def headline_table(overall: Mapping[str, float], per_example: Sequence[Mapping[str, Any]] = ()) -> str:
    """Metric, overall value, how many examples had the score defined, and what it measures."""
    rows = [(m, fmt(overall[m]), sum(1 for row in per_example if row["scores"].get(m) is not None), describe(m))
            for m in ordered_metrics(list(overall))]
    return markdown_table(["metric", "value", "n", "what it measures"], rows, align="lrrl") + "\n"


def parse_markdown_table(markdown: str, header: str = "metric") -> dict[str, list[str]]:
    """Rows of the first table whose first column is `header`: first cell -> the other cells."""
    rows: dict[str, list[str]] = {}
    in_table = False
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if not cells:
            if in_table:
                break
            continue
        if not in_table:
            in_table = cells[0] == header
            continue
        if not re.fullmatch(r":?-+:?", cells[0]):
            rows[cells[0]] = cells[1:]
    return rows


def worst_examples(per_example: Sequence[Mapping[str, Any]], worst_by: str, n: int) -> list[str]:
    """Markdown for the `n` lowest-scoring examples, each with its retrieved context."""
    def key(row: Mapping[str, Any]) -> tuple[float, ...]:
        return tuple(_or_inf(row["scores"].get(m)) for m in (worst_by, "faithfulness", "rougeL"))

    ranked = sorted(per_example, key=key)[:n]
    out = [f"## The {len(ranked)} worst examples (by {worst_by})\n"]
    for i, row in enumerate(ranked, 1):
        out += _example_section(i, row, worst_by)
    return out


def _example_section(i: int, row: Mapping[str, Any], worst_by: str) -> list[str]:
    scores = row["scores"]
    details = row.get("details", {})
    score_list = ", ".join(f"{m} {fmt(scores[m])}" for m in ordered_metrics(list(scores)))
    out = [f"### {i}. {_inline(row.get('label') or row['id'])}: {worst_by} {fmt(scores.get(worst_by))}\n",
           f"**Question:** {_inline(row['question'])}\n",
           f"**Reference:** {_inline(row['reference'])}\n",
           f"**Prediction:** {_inline(row['prediction']) or '*(empty)*'}\n",
           f"Scores: {score_list}\n"]
    if details.get("invented_tokens"):
        out.append("Not in the context: " + ", ".join(f"`{t}`" for t in details["invented_tokens"]) + "\n")
    if details.get("unsupported_sentences"):
        unsupported = " / ".join(_inline(s) for s in details["unsupported_sentences"])
        out.append(f"Unsupported sentences: {unsupported}\n")
    out.append("Retrieved context:\n")
    contexts = list(row.get("contexts", []))
    ids = list(row.get("retrieved_chunk_ids", []))
    names = list(row.get("retrieved_chunk_labels", []))  # absent from reports written before labels existed
    gold = set(row.get("gold_chunk_ids", []))
    if not contexts:
        out.append("*(none)*\n")
    for rank, chunk in enumerate(contexts, 1):
        cid = ids[rank - 1] if rank <= len(ids) else ""
        name = _inline(names[rank - 1]) if rank <= len(names) else f"`{cid}`"
        label = f"{rank}. {name}" + (" (gold)" if cid in gold else "") if cid else f"{rank}."
        excerpt = chunk if len(chunk) <= _CONTEXT_CHARS else chunk[:_CONTEXT_CHARS] + " …"
        out.append(label + "\n\n" + "\n".join("> " + line for line in excerpt.splitlines()) + "\n")
    return out


def chunk_label(title: str | None, document_id: str, ordinal: int) -> str:
    """How a report names a chunk: its document's title (else id) and its ordinal ("install.md #3"),
    which a reader can find, unlike the chunk's UUID."""
    return f"{title or document_id} #{ordinal}"


def settings_table(settings: Mapping[str, Any]) -> str:
    rows = [(key, value if isinstance(value, str) else json.dumps(value, default=str))
            for key, value in _flatten(settings)]
    return markdown_table(["setting", "value"], rows) + "\n"


def load_report(source: ReportSource) -> dict[str, Any]:
    """A report as a dict: from an EvalResult, a mapping, report.json, or the folder holding it."""
    if isinstance(source, EvalResult):
        return source.to_dict()
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    path = path / "report.json" if path.is_dir() else path
    return dict(json.loads(path.read_text(encoding="utf-8")))


def compare_reports(runs: Mapping[str, ReportSource], out_dir: str | Path | None = None) -> str:
    """Several runs' overall metrics side by side (first run = baseline for the Δ columns).

    With `out_dir`, also writes compare.md and compare.png (grouped bars). Returns the Markdown table.
    """
    loaded = {name: load_report(src) for name, src in runs.items()}
    table = comparison_table(loaded)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        plots.plot_comparison({k: r["overall"] for k, r in loaded.items()}, _union_metrics(loaded),
                              out / "compare.png")
        (out / "compare.md").write_text(f"# Runs compared\n\n{table}\n![Runs compared](compare.png)\n",
                                        encoding="utf-8")
    return table


def comparison_table(runs: Mapping[str, Mapping[str, Any]]) -> str:
    """The comparison as Markdown: the table, then how many examples each run had."""
    header, rows, note = _comparison(runs)
    return markdown_table(header, rows, align="l" + "r" * (len(header) - 1)) + f"\n\n{note}\n"


def comparison_console_table(runs: Mapping[str, ReportSource]) -> Table:
    """The comparison for a terminal: a rich table, which fits its columns to the width, where the Markdown
    table's long header line wraps unreadably at 80 columns."""
    header, rows, note = _comparison({name: load_report(src) for name, src in runs.items()})
    names = list(runs)
    header = header[: len(names) + 1] + [f"Δ {n}" for n in names[1:]]  # the note names the baseline
    baseline = f" Baseline: {names[0]}." if len(names) > 1 else ""
    table = Table(title="Runs compared", caption=note + baseline, caption_justify="left")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right", overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def _comparison(runs: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], list[list[str]], str]:
    """Header, rows (metric, each run's value, each run's Δ to the first) and the note under them."""
    names = list(runs)
    base = names[0] if names else ""
    header = ["metric", *names, *(f"Δ {n} − {base}" for n in names[1:])]
    rows = []
    for m in _union_metrics(runs):
        values = [runs[n]["overall"].get(m) for n in names]
        deltas = [None if v is None or values[0] is None else v - values[0] for v in values[1:]]
        rows.append([m, *(fmt(v) for v in values), *(_signed(d) for d in deltas)])
    counts = ", ".join(f"{n}: {r.get('n_examples', len(r.get('per_example', [])))}" for n, r in runs.items())
    note = " Δ is run − baseline; higher is better except for perplexity." if len(names) > 1 else ""
    return header, rows, f"Examples per run: {counts}.{note}"


def _union_metrics(runs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return ordered_metrics(list(dict.fromkeys(m for r in runs.values() for m in r["overall"])))


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.4f}"


def _or_inf(value: float | None) -> float:
    return math.inf if value is None else float(value)


def _inline(value: str) -> str:
    return " ".join(value.split())


def _flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in data.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            items += _flatten(value, full + ".")
        else:
            items.append((full, value))
    return items
