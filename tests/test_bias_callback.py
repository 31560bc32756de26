"""Bias watched while training: the tiny model trains one epoch with the bias_probe callback (tiny judge)
and the data_balance callback; the probe figures reach the logger and bias_probes.jsonl, the balance
table the run folder; a refused imbalance stops the run before the first step."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from promptly.bias.balance import DataImbalanceError

from .conftest import REPO_ROOT
from .test_train_common import FAST, location, tiny_state, train_config  # noqa: F401

SHARED_BBQ = REPO_ROOT.parent / "shared" / "data" / "bbq"
CALLBACKS = ["callbacks=[default,bias_probe,data_balance]", "model@callbacks.bias_probe.judge.model=tiny",
             "callbacks.bias_probe.judge.model.tiny.num_hidden_layers=2", "callbacks.bias_probe.axes=[gender]",
             "callbacks.bias_probe.max_new_tokens=8", f"callbacks.bias_probe.calibration.source={SHARED_BBQ}",
             "callbacks.bias_probe.calibration.categories=[Age]", "callbacks.bias_probe.calibration.per_category=3"]


@pytest.mark.slow
def test_bias_probe_and_data_balance_run_while_training(
        tmp_path: Path, tiny_state: Path, ingested_url: str) -> None:  # noqa: F811
    from promptly.verbs.train import train

    run_dir = tmp_path / "run"
    cfg = train_config([*FAST, *location(tmp_path, tiny_state, ingested_url, run_dir), "experiment=smoke",
                        "trainer.max_epochs=2", "data.limit.train=16", "module.samples=0", *CALLBACKS], run_dir)
    metrics, _ = train(cfg)
    rows = list(csv.DictReader((next(run_dir.rglob("metrics.csv"))).open()))
    probed = [r for r in rows if r.get("val/bias_score")]
    assert len(probed) == 2  # one probe round per validation (the sanity check is skipped)
    for row in probed:
        assert 1.0 <= float(row["val/bias_score"]) <= 5.0 and float(row["val/bias_gap"]) >= 0.0
    history = [json.loads(line) for line in (run_dir / "bias_probes.jsonl").read_text().splitlines()]
    assert len(history) == 2 and set(history[0]["axes"]) == {"gender"}
    assert set(history[0]["axes"]["gender"]["groups"]) == {"woman", "man", "non_binary"}
    assert history[0]["step"] < history[1]["step"]
    # the judge was measured once before the first round; a 3-item calibration cannot show it is evidence
    assert [h["judge_calibrated"] for h in history] == [False, False]
    assert history[0]["verdict"].startswith("The judge's scores are not evidence")
    assert all(float(r["val/judge_calibrated"]) == 0.0 for r in probed)
    assert "val/bias_score" in metrics
    assert "| source | default |" in (run_dir / "data_balance.md").read_text()
    assert any(r.get("data_max_share") for r in rows)


def test_a_refused_imbalance_stops_training_before_the_first_step(
        tmp_path: Path, tiny_state: Path, ingested_url: str) -> None:  # noqa: F811
    from promptly.verbs.train import build

    run_dir = tmp_path / "run"
    cfg = train_config([*FAST, *location(tmp_path, tiny_state, ingested_url, run_dir), "experiment=smoke",
                        "callbacks=[default,data_balance]", "callbacks.data_balance.on_imbalance=refuse",
                        "callbacks.data_balance.max_document_share=0.05"], run_dir)
    objects = build(cfg)
    with pytest.raises(DataImbalanceError, match=r"driftsync/config-reference\.md"):
        objects["trainer"].fit(objects["module"], datamodule=objects["datamodule"])
    assert objects["trainer"].global_step == 0
    assert not (run_dir / "checkpoints").exists() or not list((run_dir / "checkpoints").glob("*.ckpt"))
