"""The one Markdown-table writer, the compare table on a terminal, worst examples named by title and ordinal."""

from __future__ import annotations

import json
from pathlib import Path

import markdown
import pytest
from rich.console import Console

from promptly.evaluation.report import chunk_label, comparison_console_table, parse_markdown_table, worst_examples
from promptly.utils.markdown import markdown_table


def test_cells_with_pipes_and_newlines_stay_in_their_column() -> None:
    table = markdown_table(["metric", "value"], [("a|b", "line one\nline two"), ("short",)], align="lr")
    html = markdown.markdown(table, extensions=["tables"])
    assert html.count("<tr>") == 3 and html.count("<td") == 4  # header + 2 rows, 2 cells each
    assert "<td>a|b</td>" in html and ">line one line two</td>" in html
    assert '<th style="text-align: right;">value</th>' in html
    assert table.splitlines()[1] == "| --- | ---: |"


def test_rows_longer_than_the_header_and_unknown_alignments_are_refused() -> None:
    with pytest.raises(ValueError, match="3 cells under a header of 2"):
        markdown_table(["a", "b"], [(1, 2, 3)])
    with pytest.raises(ValueError, match="align"):
        markdown_table(["a", "b"], [], align="lx")


def _report(values: dict[str, float], n: int) -> dict[str, object]:
    return {"overall": values, "n_examples": n, "per_example": []}


def test_compare_on_a_terminal_is_a_table_that_fits_80_columns() -> None:
    runs = {"smollm2-135m-base": _report({"bleu": 0.1, "rougeL": 0.25, "faithfulness": 0.5}, 7),
            "smollm2-135m-finetuned-lora": _report({"bleu": 0.3, "rougeL": 0.2, "faithfulness": 0.75}, 7)}
    console = Console(width=80, record=True, color_system=None)
    console.print(comparison_console_table(runs))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    bleu = next(line for line in text.splitlines() if line.lstrip("│ ").startswith("bleu"))
    assert "0.1000" in bleu and "0.3000" in bleu and "+0.2000" in bleu
    assert "Examples per run: smollm2-135m-base: 7" in " ".join(text.split())
    assert "|" not in text and "---" not in text  # no raw Markdown


def test_worst_examples_are_named_by_document_title_and_ordinal() -> None:
    row = {"id": "9b2f6c1e-0000-5000-8000-000000000000", "question": "Which port?", "reference": "7300",
           "prediction": "9090", "scores": {"coverage": 0.0}, "contexts": ["emberd listens on 7300.", "other"],
           "retrieved_chunk_ids": ["u-1", "u-2"], "gold_chunk_ids": ["u-2"],
           "label": chunk_label("Install emberdb", "install.md", 3),
           "retrieved_chunk_labels": [chunk_label("Install emberdb", "install.md", 3), chunk_label(None, "faq.md", 0)]}
    text = "\n".join(worst_examples([row], "coverage", 1))
    assert "### 1. Install emberdb #3: coverage 0.0000" in text
    assert "1. Install emberdb #3\n" in text and "2. faq.md #0 (gold)" in text
    assert "9b2f6c1e" not in text and "u-1" not in text
    old = {k: v for k, v in row.items() if k not in ("label", "retrieved_chunk_labels")}  # a report from before
    assert "### 1. 9b2f6c1e" in "\n".join(worst_examples([old], "coverage", 1))


def test_reports_parse_back_through_the_helper() -> None:
    table = markdown_table(["metric", "value"], [("bleu", "0.1000"), ("rougeL", "0.2000")], align="lr")
    assert parse_markdown_table(table) == {"bleu": ["0.1000"], "rougeL": ["0.2000"]}


def test_eval_compare_prints_a_table_and_writes_markdown(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from promptly.verbs.eval import run

    for name, bleu in (("base", 0.1), ("tuned", 0.3)):
        (tmp_path / name).mkdir()
        report = {"settings": {"name": f"smollm2-{name}"}, **_report({"bleu": bleu, "rougeL": 0.2}, 4)}
        (tmp_path / name / "report.json").write_text(json.dumps(report))
    cfg = OmegaConf.create({"compare": [str(tmp_path / "base"), str(tmp_path / "tuned")],
                            "paths": {"output_dir": str(tmp_path / "out")}})
    console = Console(width=80, record=True, color_system=None)
    assert run(cfg, console) == {"compare": cfg.compare}
    text = console.export_text()
    assert "Runs compared" in text and "| metric |" not in text
    assert any("bleu" in line and "+0.2000" in line for line in text.splitlines())
    written = (tmp_path / "out" / "compare.md").read_text()
    assert "| metric | smollm2-base | smollm2-tuned | Δ smollm2-tuned − smollm2-base |" in written
