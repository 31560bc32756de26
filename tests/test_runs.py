"""`promptly runs` on run folders as `promptly train` leaves them (result.json per run)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf
from rich.console import Console

from promptly.utils.results import RunResult, write_result
from promptly.verbs.runs import collect, direction, run


def make(root: Path, name: str, status: str, overrides: list[str], **metrics: float) -> None:
    write_result(root / name, RunResult(status=status, overrides=overrides, optimized_metric="val/loss",
                                        metrics={k.replace("__", "/"): v for k, v in metrics.items()},
                                        duration_s=12.0, error=None if status == "ok" else "ValueError: boom"))


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "multiruns" / "2026-01-01_00-00-00"
    make(root, "0", "ok", ["model=tiny", "optim.lr=0.001"], val__loss=2.5, val__sample_exact_match=0.25)
    make(root, "1", "ok", ["model=tiny", "optim.lr=0.003"], val__loss=1.5, val__sample_exact_match=0.5)
    make(root, "2", "failed", ["model=tiny", "optim.lr=-1"])
    make(root, "3", "ok", ["model=tiny", "optim.lr=0.01"], val__loss=float("nan"))
    return root


def table(root: Path, **cfg: object) -> tuple[list[str], list]:  # type: ignore[type-arg]
    console = Console(record=True, width=200)
    rows = run(OmegaConf.create({"dir": str(root), "sort_by": None, "mode": "auto",
                                 "metrics": ["val/loss", "val/sample_exact_match"], "limit": None, **cfg}), console)
    text = console.export_text()
    return [line for line in text.splitlines() if line.startswith("│")], rows


def test_runs_are_sorted_by_the_optimised_metric_and_the_best_is_starred(sweep: Path) -> None:
    lines, rows = table(sweep)
    assert [r.path.name for r in rows] == ["1", "0", "2", "3"]  # failed and NaN runs last
    assert "★" in lines[0] and "optim.lr=0.003" in lines[0] and "1.5" in lines[0]
    assert "★" not in "".join(lines[1:])
    assert "model=tiny" not in "".join(lines)  # shared by every run: not what tells them apart
    assert "failed" in lines[2]


def test_a_maximised_metric_sorts_the_other_way(sweep: Path) -> None:
    _, rows = table(sweep, sort_by="val/sample_exact_match")
    assert rows[0].path.name == "1" and rows[0].best
    _, rows = table(sweep, sort_by="val/sample_exact_match", mode="min")
    assert rows[0].path.name == "0"
    assert direction("val/loss") == "min" and direction("val/sample_f1") == "max"
    assert direction("train/supervised_tokens_per_sec") == "max"


def test_runs_of_a_whole_log_folder_and_of_one_run(sweep: Path, tmp_path: Path) -> None:
    make(tmp_path / "runs", "2026-01-02_00-00-00", "ok", ["experiment=smoke"], val__loss=1.0)
    rows, metric = collect(tmp_path)
    assert metric == "val/loss" and len(rows) == 5 and rows[0].path.name == "2026-01-02_00-00-00"
    lines, rows = table(sweep / "1")
    assert len(rows) == 1 and rows[0].best and "optim.lr=0.003" in lines[0]


def test_an_empty_folder_says_so(tmp_path: Path) -> None:
    console = Console(record=True, width=120)
    assert run(OmegaConf.create({"dir": str(tmp_path), "sort_by": None}), console) == []
    assert "no runs under" in console.export_text()
