"""`publish.only_if_better`, the gate train.yml publishes through: a run's newest evaluation must beat the
store's active version on an evaluation metric, in the direction promptly/metrics_catalog.py declares;
ties keep the active version; with nothing active (or nothing recorded to beat) it publishes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from promptly.errors import ConfigError
from promptly.publish.selection import Evaluation, compare_with_active
from promptly.store.base import ModelVersion
from promptly.store.postgres import PostgresStore
from promptly.verbs.publish import run as run_publish

from .conftest import DIM
from .test_publish_common import newest_evaluation_line, publish_config, publish_store  # noqa: F401
from .test_train_common import tiny_state  # noqa: F401  (fixture)


def evaluation(**metrics: float) -> Evaluation:
    return Evaluation(report_dir=Path("r"), report_json=Path("r/report.json"), split="test", examples=8,
                      metrics=metrics, checkpoint="c.ckpt")


def version(**metrics: float) -> ModelVersion:
    return ModelVersion(version="v3", repo_id="me/bot", metrics=metrics, is_active=True)


def test_the_declared_direction_decides_and_ties_keep_the_active_version() -> None:
    assert compare_with_active(evaluation(rougeL=0.4), version(rougeL=0.3), "eval/rougeL").better
    assert not compare_with_active(evaluation(rougeL=0.3), version(rougeL=0.4), "eval/rougeL").better
    tie = compare_with_active(evaluation(rougeL=0.3), version(rougeL=0.3), "rougeL")
    assert not tie.better and tie.reason == "rougeL 0.3 does not beat the active version me/bot v3's 0.3 (max)"
    # perplexity is declared lower-is-better
    assert compare_with_active(evaluation(perplexity=9.0), version(perplexity=12.0), "eval/perplexity").better
    assert not compare_with_active(evaluation(perplexity=13.0), version(perplexity=12.0), "eval/perplexity").better
    assert compare_with_active(evaluation(perplexity=13.0), version(perplexity=12.0), "eval/perplexity",
                               mode="max").better  # an explicit mode wins


def test_nothing_to_beat_publishes_and_bad_metrics_are_refused() -> None:
    first = compare_with_active(evaluation(bleu=0.1), None, "eval/bleu")
    assert first.better and first.incumbent is None and first.reason == "no version is active yet"
    assert compare_with_active(evaluation(bleu=0.1), version(rougeL=0.9), "eval/bleu").better
    with pytest.raises(ConfigError, match="needs the metric"):
        compare_with_active(evaluation(bleu=0.1), None, None)
    with pytest.raises(ConfigError, match="compares evaluation metrics"):
        compare_with_active(evaluation(bleu=0.1), None, "val/loss")
    with pytest.raises(ConfigError, match="has no 'rougeL'"):
        compare_with_active(evaluation(bleu=0.1), None, "eval/rougeL")
    with pytest.raises(ConfigError, match="no declared direction"):
        compare_with_active(evaluation(made_up=0.1), None, "eval/made_up")


@pytest.mark.slow
def test_only_a_better_run_replaces_the_active_version(tmp_path: Path, evaluated_run: Path,
                                                       publish_store: str) -> None:  # noqa: F811
    gate = ["publish.repo_id=docs-bot", "publish.metric=eval/rougeL", "publish.only_if_better=true",
            "publish.promote=true"]
    metrics, objects = run_publish(publish_config(tmp_path, publish_store, [f"run_dir={evaluated_run}", *gate]))
    assert objects["version"].version == "v1" and objects["version"].is_active  # nothing active: published
    rouge = metrics["rougeL"]

    # The same evaluation again: a tie, so nothing is pushed and the command still succeeds.
    metrics, objects = run_publish(publish_config(tmp_path, publish_store, [f"run_dir={evaluated_run}", *gate]))
    assert metrics == {"published": 0.0, "candidate/rougeL": rouge, "active/rougeL": rouge}
    assert "version" not in objects and not objects["verdict"].better

    # A copy of the run whose evaluation scores higher replaces it.
    better = tmp_path / "better-run"
    shutil.copytree(evaluated_run, better)
    line = newest_evaluation_line(evaluated_run)
    report = json.loads(Path(line["report_json"]).read_text())
    report["overall"]["rougeL"] = rouge + 0.1
    (better / "report.json").write_text(json.dumps(report))
    line["report_json"] = str(better / "report.json")
    with (better / "evaluations.jsonl").open("a") as f:
        f.write(json.dumps(line) + "\n")
    metrics, objects = run_publish(publish_config(tmp_path, publish_store, [f"run_dir={better}", *gate]))
    assert objects["version"].version == "v2" and objects["version"].is_active
    assert metrics["rougeL"] == pytest.approx(rouge + 0.1)
    with PostgresStore(publish_store, embedding_dim=DIM) as store:
        assert [(v.version, v.is_active) for v in store.list_model_versions()] in (
            [("v1", False), ("v2", True)], [("v2", True), ("v1", False)])
