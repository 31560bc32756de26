"""hydra/launcher=kaggle through the real CLI and the real `kaggle` client, against tests/cloud/kaggle_server.py
(which executes each pushed notebook for real): a sweep whose kernels run, fail and come back as local job
folders that `promptly runs` reads; W&B runs of the sweep grouped; a timeout and a later `launch pull`;
credentials missing or refused and a wrong data source stopping the launch before any push; no secret in
anything pushed or written. The server listens on Kaggle's TEST port (7777): these tests run one at a time.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from promptly.utils.results import read_result

from .cli_batch import shared_runner
from .cloud.kaggle_server import KaggleServer
from .test_train_common import REPO_ROOT, tiny_state  # noqa: F401
from .test_train_multirun import wandb_run

USER, KEY = "tester", "kaggle-key-0123456789abcdef"
DB_PASSWORD = "db-pw-kaggle-5150"
PLANTED = {"WANDB_API_KEY": "planted-wandb-key-8f3a2b1c", "HF_TOKEN": "hf_plantedtokenplantedtoken1234",
           "SUPABASE_SERVICE_KEY": "planted-supabase-key-77aa"}
LRS = ["0.003", "0.001", "-1.0"]  # the last job's kernel fails (AdamW rejects a negative learning rate)
TRAIN = ["model=tiny", "trainer=cpu", "logger=wandb", "trainer.enable_progress_bar=false",
         "trainer.enable_model_summary=false", "model.tiny.num_hidden_layers=2", "data.max_length=160",
         "data.retrieval.k=1", "data.limit.train=16", "data.limit.validation=4", "data.limit.test=0",
         "trainer.max_epochs=1", "module.samples=2", "module.max_new_tokens=8", "export=false"]
FAST_POLL = ["hydra.launcher.poll_interval_s=0.5", "hydra.launcher.poll_backoff=1.5",
             "hydra.launcher.max_poll_interval_s=2", "hydra.launcher.install=preinstalled"]


def _kernel_env(tmp: Path) -> dict[str, str]:
    """The kernels' environment (the server runs them here): W&B offline, none of the planted secrets."""
    env = {k: v for k, v in os.environ.items() if k not in PLANTED and not k.startswith("KAGGLE_")}
    return {**env, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(tmp / "wandb-dir")}


def _launcher_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    return {**env, **PLANTED, "KAGGLE_USERNAME": USER, "KAGGLE_KEY": KEY, "KAGGLE_API_ENVIRONMENT": "TEST",
            "KAGGLE_CONFIG_DIR": str(tmp / "kaggle-config"), "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "200",
            "WANDB_MODE": "offline", "WANDB_SILENT": "true", **extra}


def promptly(args: list[str], cwd: Path, env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """`promptly <args>` in a process of its own, forked from the session's driver (tests/cli_batch.py): the
    Kaggle client is imported when a launcher or verb makes one, with this command's credentials."""
    return shared_runner().run(args, cwd, env, timeout=timeout)


def _db_url(ingested_url: str) -> str:
    return f"{ingested_url} password={DB_PASSWORD}"  # trust auth ignores it; it must never travel


@pytest.fixture(scope="module")
def sweep(ingested_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("kaggle-sweep")
    secrets = {"PROMPTLY_DATABASE_URL": _db_url(ingested_url)}  # the account's Kaggle Secrets
    with KaggleServer(tmp / "kaggle", USER, KEY, secrets=secrets, base_env=_kernel_env(tmp)) as server:
        env = _launcher_env(tmp, PROMPTLY_DATABASE_URL=_db_url(ingested_url))
        proc = promptly(["train", "-m", f"paths.log_dir={tmp / 'logs'}", "store=postgres", *TRAIN,
                         f"optim.lr={','.join(LRS)}", "hydra/launcher=kaggle", "hydra.launcher.data.source=store",
                         "hydra.launcher.max_parallel=3", *FAST_POLL], tmp, env)  # the three kernels at once
        (sweep_dir,) = (tmp / "logs" / "train" / "multiruns").iterdir()
        runs = promptly(["runs", f"dir={sweep_dir}", "sort_by=val/loss"], tmp, env, timeout=120)
        status = promptly(["launch", "status", f"dir={sweep_dir}"], tmp, env, timeout=120)
    # the server is closed (port 7777 free for the next test); what it recorded stays readable
    return {"proc": proc, "dir": sweep_dir, "runs": runs, "status": status, "server": server, "tmp": tmp}


@pytest.mark.slow
def test_each_job_runs_as_a_kernel_and_comes_back_as_a_local_job(sweep: dict[str, Any]) -> None:
    proc, sweep_dir, server = sweep["proc"], sweep["dir"], sweep["server"]
    assert proc.returncode != 0, proc.stderr[-3000:]  # Hydra reports the failed job at the end...
    assert len(server.kernels) == 3  # ...after all three ran
    for num, lr in enumerate(LRS[:2]):
        job = sweep_dir / str(num)
        result = read_result(job / "result.json")
        assert result.status == "ok", (result.error, (job / "kaggle.log").read_text()[-2000:])
        assert f"optim.lr={lr}" in result.overrides and result.job_num == num
        assert result.output_dir == str(job) and result.value == result.metrics["val/loss"]
        assert list((job / "checkpoints").glob("*.ckpt")) and (job / "config.yaml").is_file()
        assert (job / "train.log").is_file() and "promptly train" in (job / "kaggle.log").read_text()
        assert result.best_model_path and result.best_model_path.startswith(str(job))
    failed = read_result(sweep_dir / "2" / "result.json")
    assert failed.status == "failed" and "Invalid learning rate" in (failed.error or "")
    assert "promptly-" in proc.stderr and "Invalid learning rate" in proc.stderr  # the kernel, its log's tail
    assert "\x1b[" not in (sweep_dir / "2" / "kaggle.log").read_text()
    record = json.loads((sweep_dir / "kaggle_launch.json").read_text())["kernels"]
    assert [k["state"] for k in record] == ["COMPLETE", "COMPLETE", "ERROR"] and all(k["pulled"] for k in record)


@pytest.mark.slow
def test_promptly_runs_and_launch_status_read_the_kaggle_sweep(sweep: dict[str, Any]) -> None:
    runs, status = sweep["runs"], sweep["status"]
    assert runs.returncode == 0, runs.stderr
    rows = [line for line in runs.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 3 and "★" in rows[0] and "failed" in rows[2] and "optim.lr=-1.0" in rows[2]
    assert status.returncode == 0, status.stderr
    table = [line for line in status.stdout.splitlines() if "promptly-" in line]
    assert len(table) == 3 and sum("COMPLETE" in line for line in table) == 2 and "ERROR" in table[2]


@pytest.mark.slow
def test_wandb_runs_of_the_sweep_share_a_group(sweep: dict[str, Any]) -> None:
    sweep_dir = sweep["dir"]
    runs = {num: wandb_run(sweep_dir / str(num)) for num in (0, 1)}
    assert runs[0]["group"] == runs[1]["group"] == f"tiny-rag_qa/{sweep_dir.name}"
    assert runs[0]["name"] != runs[1]["name"] and "optim.lr=0.003" in runs[0]["name"]


@pytest.mark.slow
def test_no_secret_is_pushed_or_written(sweep: dict[str, Any]) -> None:
    server, sweep_dir = sweep["server"], sweep["dir"]
    pushed = "\n".join(server.pushed_bodies)
    assert "PROMPTLY_DATABASE_URL" in pushed  # names travel, values do not
    for secret in [DB_PASSWORD, KEY, *PLANTED.values()]:
        assert secret not in pushed
        for path in sweep_dir.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
    notebook = json.loads(json.loads(server.pushed_bodies[0])["text"])
    assert len(notebook["cells"]) <= 5  # a thin notebook: the logic is in the package


def _single_job(tmp: Path, extra: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return promptly(["train", "-m", f"paths.log_dir={tmp / 'logs'}", "store=postgres", *TRAIN, "optim.lr=0.003",
                     "hydra/launcher=kaggle", "hydra.launcher.data.source=store", *FAST_POLL, *extra], tmp, env)


@pytest.mark.slow
def test_a_timed_out_kernel_fails_its_job_and_launch_pull_fetches_it_later(
        ingested_url: str, tmp_path: Path) -> None:
    secrets = {"PROMPTLY_DATABASE_URL": _db_url(ingested_url)}
    with KaggleServer(tmp_path / "kaggle", USER, KEY, secrets=secrets, base_env=_kernel_env(tmp_path),
                      hang=("*",)) as server:  # the kernel stays RUNNING until released
        proc = _single_job(tmp_path, ["hydra.launcher.timeout_s=2"], _launcher_env(tmp_path))
        assert proc.returncode != 0 and "did not finish within timeout_s=2" in proc.stderr, proc.stderr[-2000:]
        (sweep_dir,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
        (record,) = json.loads((sweep_dir / "kaggle_launch.json").read_text())["kernels"]
        assert record["state"] == "TIMEOUT" and not (sweep_dir / "0" / "result.json").exists()
        server.release(record["kernel"])  # the kernel runs now, long after the launcher gave up
        server.wait(record["kernel"])
        pull = promptly(["launch", "pull"], tmp_path, _launcher_env(tmp_path))
    assert pull.returncode == 0, pull.stderr
    assert read_result(sweep_dir / "0" / "result.json").status == "ok"
    (record,) = json.loads((sweep_dir / "kaggle_launch.json").read_text())["kernels"]
    assert record["state"] == "COMPLETE" and record["pulled"]


CANNOT_WORK = {"no credentials": "no Kaggle credentials", "refused credentials": "Kaggle refused",
               "embedded store": "cannot reach it", "no dataset": "hydra.launcher.data.dataset=<owner>/<slug>",
               "secret override": "holds a secret"}
"""Each launch that cannot work, and what its one-line error must say."""


@pytest.fixture(scope="module")
def refused_launches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every case of CANNOT_WORK launched against one server, each `promptly train -m` in its own process
    (forked from the session's driver: tests/cli_batch.py) with its own folder and credentials."""
    tmp = tmp_path_factory.mktemp("kaggle-refused")
    changes: list[dict[str, str | None]] = []
    commands = []
    for num, case in enumerate(CANNOT_WORK):
        change: dict[str, str | None] = {}
        extra: list[str] = []
        if case == "no credentials":
            change = {"KAGGLE_USERNAME": None, "KAGGLE_KEY": None}
        elif case == "refused credentials":
            change = {"KAGGLE_KEY": "wrong-key-000000"}
        elif case == "embedded store":
            extra = ["store=embedded"]
        elif case == "no dataset":
            extra = ["hydra.launcher.data.source=dataset", "store=embedded"]
        else:
            extra = [f"store.url='postgresql://u:{DB_PASSWORD}@db.example.com/x'"]
        changes.append(change)
        commands.append(["train", "-m", f"paths.log_dir={tmp / str(num) / 'logs'}", "store=postgres", *TRAIN,
                         "optim.lr=0.003", "hydra/launcher=kaggle", "hydra.launcher.data.source=store", *FAST_POLL,
                         *extra])
    dirs = [tmp / str(num) for num in range(len(commands))]
    for folder in dirs:
        folder.mkdir()
    with KaggleServer(tmp / "kaggle", USER, KEY, base_env=_kernel_env(tmp)) as server:
        results = []
        for command, change, folder in zip(commands, changes, dirs, strict=True):
            env = {**_launcher_env(tmp), **{k: v for k, v in change.items() if v is not None}}
            for key in [k for k, v in change.items() if v is None]:
                env.pop(key, None)
            results.append(promptly(command, folder, env, timeout=300))
    return {"procs": dict(zip(CANNOT_WORK, results, strict=True)), "server": server}


@pytest.mark.parametrize("case", list(CANNOT_WORK))
def test_a_launch_that_cannot_work_stops_before_any_push(case: str, refused_launches: dict[str, Any]) -> None:
    proc, server = refused_launches["procs"][case], refused_launches["server"]
    assert proc.returncode != 0
    assert CANNOT_WORK[case] in proc.stderr, proc.stderr[-2000:]
    assert not any("SaveKernel" in r for r in server.requests) and not server.kernels  # no case pushed
    assert "Traceback" not in proc.stderr and DB_PASSWORD not in proc.stderr + proc.stdout
