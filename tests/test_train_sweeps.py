"""The configured sweeper and launcher really run, together, through the real CLI on the tiny model: a
two-trial Optuna search (hparams_search=optuna) whose trials the joblib launcher (hydra/launcher=joblib)
runs side by side in worker processes ends with its optimization result naming the best trial; each job
leaves one result.json in its own folder. (The basic launcher's sweeps: tests/test_train_multirun.py.)"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from promptly.utils.results import RunResult, read_result

from .cli_batch import shared_runner
from .test_train_common import FAST, REPO_ROOT, SAMPLE_DATA, tiny_state  # noqa: F401

SMALL = [*FAST, "model/peft=lora", "model.peft.dropout=0.0", "data.limit.train=8", "data.limit.validation=4",
         "data.limit.test=0", "trainer.max_epochs=1", "module.samples=0"]


def multirun(tmp: Path, store_url: str, state: Path, *overrides: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONPATH": str(REPO_ROOT),
           "OMP_NUM_THREADS": "1"}
    args = ["train", "-m", f"paths.data_dir={SAMPLE_DATA}",
            f"paths.state_dir={state}", f"paths.log_dir={tmp / 'logs'}", "store=postgres",
            f"store.url='{store_url}'", "experiment=smoke", *SMALL, *overrides]
    proc = shared_runner().run(args, tmp, env, timeout=900)  # forked from the session's driver (tests/cli_batch.py)
    sweeps = list((tmp / "logs" / "train" / "multiruns").iterdir())
    assert len(sweeps) == 1, proc.stderr[-3000:]
    return proc, sweeps[0]


def job_results(sweep_dir: Path) -> dict[int, RunResult]:
    return {int(p.name): read_result(p / "result.json") for p in sweep_dir.iterdir() if p.name.isdigit()}


@pytest.fixture(scope="module")
def optuna_sweep(ingested_url: str, tiny_state: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:  # noqa: F811
    """Both trials asked at once (n_jobs=2) and run by joblib's two worker processes."""
    tmp = tmp_path_factory.mktemp("optuna")
    proc, sweep_dir = multirun(tmp, ingested_url, tiny_state, "hparams_search=optuna", "hydra.sweeper.n_trials=2",
                               "hydra.sweeper.n_jobs=2", "hydra.sweeper.sampler.n_startup_trials=2",
                               "hydra/launcher=joblib")
    return {"proc": proc, "dir": sweep_dir}


@pytest.mark.slow
def test_optuna_runs_two_trials_and_reports_the_best(optuna_sweep: dict[str, Any]) -> None:
    proc, sweep_dir = optuna_sweep["proc"], optuna_sweep["dir"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = job_results(sweep_dir)
    assert sorted(results) == [0, 1]
    for r in results.values():
        assert r.status == "ok" and r.optimized_metric == "val/loss" and r.value == r.metrics["val/loss"]
        swept = {o.split("=", 1)[0] for o in r.overrides}
        assert {"optim.lr", "optim.weight_decay", "model.peft.r", "model.peft.alpha", "data.batch_size"} <= swept
    assert results[0].overrides != results[1].overrides  # two different trials
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert best["name"] == "optuna"
    winner = min(results.values(), key=lambda r: r.value or float("inf"))
    assert best["best_value"] == pytest.approx(winner.value)
    for key, value in best["best_params"].items():
        assert f"{key}={value}" in winner.overrides or any(
            o.startswith(f"{key}=") and float(o.split("=", 1)[1]) == pytest.approx(float(value))
            for o in winner.overrides), (key, value, winner.overrides)


@pytest.mark.slow
def test_joblib_runs_the_trials_in_worker_processes(optuna_sweep: dict[str, Any]) -> None:
    proc, sweep_dir = optuna_sweep["proc"], optuna_sweep["dir"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Joblib.Parallel" in proc.stderr + proc.stdout  # the joblib launcher ran them, not the basic one
    results = job_results(sweep_dir)
    assert [r.status for r in results.values()] == ["ok", "ok"]
    assert {r.output_dir for r in results.values()} == {str(sweep_dir / "0"), str(sweep_dir / "1")}
    lrs = [o for r in results.values() for o in r.overrides if o.startswith("optim.lr=")]
    assert len(lrs) == 2 and lrs[0] != lrs[1]  # each worker ran its own trial's settings
    assert results[0].metrics["val/loss"] != results[1].metrics["val/loss"]
