"""The optional loggers (logger=mlflow, logger=tensorboard; the dev extra installs mlflow-skinny and
tensorboardX) write what a run logs where their configs say, not only instantiate."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptly.utils.instantiators import instantiate_loggers

from .test_train_common import SAMPLE_DATA, train_config


def loggers_of(name: str, tmp_path: Path) -> list[object]:
    out = tmp_path / "logs" / "train" / "runs" / "now"
    out.mkdir(parents=True)  # Hydra makes the run folder (and so the log dir) before the job starts
    cfg = train_config([f"logger={name}", f"paths.root_dir={tmp_path}", f"paths.data_dir={SAMPLE_DATA}",
                        f"paths.log_dir={tmp_path / 'logs'}", f"paths.output_dir={out}"], out)
    return instantiate_loggers(cfg.logger)


def test_mlflow_logger_records_params_and_metrics_in_its_local_store(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    (logger,) = loggers_of("mlflow", tmp_path)
    logger.log_hyperparams({"optim": {"lr": 0.003}})  # type: ignore[attr-defined]
    logger.log_metrics({"val/loss": 1.25}, step=3)  # type: ignore[attr-defined]
    logger.finalize("success")  # type: ignore[attr-defined]
    assert (tmp_path / "logs" / "mlflow.db").is_file()
    run = MlflowClient(f"sqlite:///{tmp_path / 'logs' / 'mlflow.db'}").get_run(logger.run_id)  # type: ignore[attr-defined]
    assert run.data.metrics == {"val/loss": 1.25} and run.data.params["optim/lr"] == "0.003"
    assert run.info.status == "FINISHED"


def test_tensorboard_logger_writes_event_files_in_the_run_folder(tmp_path: Path) -> None:
    (logger,) = loggers_of("tensorboard", tmp_path)
    logger.log_metrics({"val/loss": 1.25}, step=3)  # type: ignore[attr-defined]
    logger.finalize("success")  # type: ignore[attr-defined]
    events = list((tmp_path / "logs" / "train" / "runs" / "now" / "tensorboard").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
