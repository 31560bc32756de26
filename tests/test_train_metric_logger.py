"""MetricLogger: every Lightning logger promptly configures speaks the protocol; tables reach W&B, and a
logger without tables (CSV) still takes the scalars and the config."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from promptly.utils.metric_logger import LightningMetricLogger, MetricLogger, metric_loggers


def test_a_csv_logger_takes_scalars_and_config_and_skips_tables(tmp_path: Path) -> None:
    (logger,) = metric_loggers([CSVLogger(tmp_path, name="run", version=0)])
    assert isinstance(logger, MetricLogger)
    logger.log("val/loss", 1.25, step=3)
    logger.log_dict({"val/ppl": 3.5, "val/f1": 0.5}, step=4)
    logger.log_config({"optim": {"lr": 0.003}})
    logger.log_table("val/samples", ["question", "generated"], [["q", "a"]])  # no table in a CSV: no error
    logger.close()
    run = tmp_path / "run" / "version_0"
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert {(r["step"], r["val/loss"]) for r in rows if r["val/loss"]} == {("3", "1.25")}
    assert {(r["step"], r["val/ppl"], r["val/f1"]) for r in rows if r["val/ppl"]} == {("4", "3.5", "0.5")}
    assert yaml.safe_load((run / "hparams.yaml").read_text()) == {"optim": {"lr": 0.003}}


def test_a_wandb_logger_gets_the_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    wandb_logger = WandbLogger(project="promptly-test", save_dir=str(tmp_path), offline=True)
    (logger,) = metric_loggers([wandb_logger])
    logger.log_table("val/samples", ["question", "generated"], [["Which port?", "7300"], ["Which licence?", "BSD"]])
    logger.close()
    wandb_logger.experiment.finish()
    tables = list(tmp_path.rglob("*.table.json"))
    assert len(tables) == 1 and "val" in tables[0].parts and tables[0].name.startswith("samples")
    table = json.loads(tables[0].read_text())
    assert table["columns"] == ["question", "generated"]
    assert table["data"] == [["Which port?", "7300"], ["Which licence?", "BSD"]]


def test_a_logger_that_already_speaks_the_protocol_is_kept() -> None:
    adapted = LightningMetricLogger(object())
    assert metric_loggers([adapted]) == [adapted]
