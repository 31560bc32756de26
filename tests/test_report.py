"""Reports: every file is written, report.md shows exactly the numbers in report.json, runs compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptly.evaluation.metrics import EvalExample, EvalResult, evaluate_examples
from promptly.evaluation.report import (
    compare_reports,
    fmt,
    load_report,
    parse_markdown_table,
    write_report,
)

CONTEXT = [
    "emberdb is a persistent key-value store built on a log-structured merge tree. It can be embedded "
    "as a library in Go and Rust programs.",
    "emberdb is released under the BSD 3-Clause license.",
    "Downgrading is not supported once the upgrade has run.",
]
CASES = [
    ("Which license is emberdb released under?", "emberdb is released under the BSD 3-Clause license.",
     "emberdb uses the BSD 3-Clause license.", ["c1", "c0"], ["c1"]),
    ("Which license is emberdb released under?", "emberdb is released under the BSD 3-Clause license.",
     "emberdb is released under the MIT license.", ["c0", "c2"], ["c1"]),
    ("What kind of database is emberdb?", "emberdb is a persistent key-value store built on an LSM tree.",
     "It is a key-value store built on a log-structured merge tree.", ["c0"], ["c0"]),
    ("Can I downgrade emberdb after upgrading?", "No, downgrading is not supported once the upgrade has run.",
     "No. Downgrading is not supported once the upgrade has run.", ["c2", "c0", "c1"], ["c2"]),
    ("Which languages can embed emberdb?", "Go and Rust programs can embed emberdb as a library.",
     "", ["c1"], ["c0"]),
    ("Which port does emberd listen on?", "emberd listens on port 7300.",
     "emberd listens on port 9090.", ["c0", "c1"], []),
    ("Is emberdb written in Go?", "It can be embedded in Go and Rust programs.",
     "It can be embedded as a library in Go and Rust programs.", ["c0"], ["c0"]),
]


@pytest.fixture(scope="module")
def result(embedder) -> EvalResult:  # type: ignore[no-untyped-def]
    chunks = dict(zip(["c0", "c1", "c2"], CONTEXT, strict=True))
    examples = [
        EvalExample(q, ref, pred, [chunks[c] for c in got], got, gold, id=f"ex{i}",
                    answer_nll=1.5 + i, answer_tokens=3 + i)
        for i, (q, ref, pred, got, gold) in enumerate(CASES)
    ]
    return evaluate_examples(examples, embedder, judge=lambda prompt: "What license does emberdb use?")


def test_write_report_writes_every_file(result: EvalResult, tmp_path: Path) -> None:
    files = write_report(result, tmp_path / "run", {"model": {"name": "tiny", "checkpoint": "last.ckpt"},
                                                     "retrieval": {"k": 3}})
    assert {p.name for p in (tmp_path / "run").iterdir()} == {
        "report.json", "report.md", "metrics.png", "distributions.png"}
    assert files.json == tmp_path / "run" / "report.json"
    for png in files.plots:
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    from matplotlib.image import imread

    height, width, _ = imread(files.plots[1]).shape
    assert width >= 640 and height >= 240


def test_markdown_numbers_match_json(result: EvalResult, tmp_path: Path) -> None:
    files = write_report(result, tmp_path, {"model": {"name": "tiny"}, "retrieval": {"k": 3}})
    report = json.loads(files.json.read_text())
    markdown = files.markdown.read_text()
    table = parse_markdown_table(markdown)
    assert set(table) == set(report["overall"])
    for metric, (value, n, _description) in table.items():
        assert float(value) == pytest.approx(report["overall"][metric], abs=5e-5), metric
        assert int(n) == sum(row["scores"][metric] is not None for row in report["per_example"])
    assert table["mrr"][1] == str(len(CASES) - 1)  # one example has no gold chunk
    expected = {"bleu", "rouge1", "rouge2", "rougeL", "perplexity", "answer_relevance", "answer_relevance_judged",
                "coverage", "coverage_semantic", "coverage_lexical", "faithfulness",
                "recall@1", "recall@3", "recall@5", "mrr"}
    assert set(report["overall"]) == expected
    assert len(report["per_example"]) == report["n_examples"] == len(CASES)
    assert all(set(row["scores"]) == expected for row in report["per_example"])
    assert report["settings"]["model"]["name"] == "tiny"
    assert EvalResult.from_dict(report).overall == pytest.approx(result.overall)


def test_markdown_shows_worst_examples_with_context_and_settings(result: EvalResult, tmp_path: Path) -> None:
    markdown = write_report(result, tmp_path, {"model": {"name": "tiny"}}, worst_by="faithfulness").markdown
    text = markdown.read_text()
    assert "## The 5 worst examples (by faithfulness)" in text
    worst = sorted(result.per_example, key=lambda r: (r["scores"]["faithfulness"], r["scores"]["rougeL"]))
    headings = [line for line in text.splitlines() if line.startswith("### ")]
    assert len(headings) == 5
    assert headings[0].startswith(f"### 1. {worst[0]['id']}: faithfulness {fmt(worst[0]['scores']['faithfulness'])}")
    assert "**Prediction:** *(empty)*" in text
    assert "Not in the context: `9090`" in text
    assert "> emberdb is released under the BSD 3-Clause license." in text
    assert "`c1` (gold)" in text
    settings = parse_markdown_table(text, header="setting")
    assert settings["run.model.name"] == ["tiny"]
    assert settings["metrics.faithfulness_threshold"] == ["0.5"]


def test_compare_reports_side_by_side(result: EvalResult, tmp_path: Path) -> None:
    base = EvalResult({k: v / 2 for k, v in result.overall.items()}, result.per_example, result.config)
    write_report(base, tmp_path / "base")
    write_report(result, tmp_path / "tuned")
    table = compare_reports({"base": tmp_path / "base", "tuned": tmp_path / "tuned" / "report.json"},
                            tmp_path / "cmp")
    assert (tmp_path / "cmp" / "compare.png").read_bytes()[:4] == b"\x89PNG"
    assert table in (tmp_path / "cmp" / "compare.md").read_text()
    rows = parse_markdown_table(table)
    assert set(rows) == set(result.overall)
    for metric, (b, t, delta) in rows.items():
        assert float(b) == pytest.approx(base.overall[metric], abs=5e-5)
        assert float(t) == pytest.approx(result.overall[metric], abs=5e-5)
        assert float(delta) == pytest.approx(result.overall[metric] - base.overall[metric], abs=1e-4)
    assert "Examples per run: base: 7, tuned: 7." in table


def test_write_report_with_compare_adds_the_section(result: EvalResult, tmp_path: Path) -> None:
    write_report(result, tmp_path / "base")
    files = write_report(result, tmp_path / "new", compare={"base": load_report(tmp_path / "base")},
                         name="fine-tuned")
    text = files.markdown.read_text()
    assert "## Compared with other runs" in text
    assert "| metric | base | fine-tuned | Δ fine-tuned − base |" in text
    assert (tmp_path / "new" / "compare.png").exists()


def test_report_of_an_empty_result(tmp_path: Path) -> None:
    files = write_report(EvalResult({}, []), tmp_path)
    assert parse_markdown_table(files.markdown.read_text()) == {}
    assert json.loads(files.json.read_text())["n_examples"] == 0
