"""`promptly train -m` through the real CLI: one job per value, a failing job does not stop the others,
every job logs to W&B (offline) with the redacted config and its metrics, and `promptly runs` tables
the sweep with the best job starred."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from promptly.utils.results import read_result

from .cli_batch import shared_runner
from .test_train_common import FAST, REPO_ROOT, SAMPLE_DATA, tiny_state  # noqa: F401

SECRET = "s3cret-pw-1234"
LRS = ["-1.0", "0.003", "0.0003"]  # the first job fails (AdamW rejects a negative learning rate)


def wandb_records(path: Path) -> Iterator[Any]:
    """Records of an offline run's .wandb file (W&B's LevelDB-style log of protobuf records)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        if kind == 0 and length == 0:
            break
        buf += data[pos : pos + length]
        pos += length
        if kind in (1, 4):  # FULL or LAST fragment
            record = pb.Record()
            record.ParseFromString(buf)
            yield record
            buf = b""


def wandb_run(job: Path) -> dict[str, Any]:
    (log,) = job.glob("wandb/offline-run-*/run-*.wandb")
    out: dict[str, Any] = {"config": {}, "history": [], "summary": {}}
    for r in wandb_records(log):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            out.update(group=r.run.run_group, name=r.run.display_name, tags=list(r.run.tags))
        elif kind == "config":
            out["config"].update({i.key: json.loads(i.value_json) for i in r.config.update})
        elif kind == "history":
            out["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item})
        elif kind == "artifact":
            out.setdefault("artifacts", []).append((r.artifact.type, [m.path for m in r.artifact.manifest.contents]))
    return out


@pytest.fixture(scope="module")
def sweep(ingested_url: str, tiny_state: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:  # noqa: F811
    tmp = tmp_path_factory.mktemp("sweep")
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(tmp / "wandb-dir"),
           "COLUMNS": "200", "PYTHONPATH": str(REPO_ROOT)}
    env.pop("WANDB_API_KEY", None)
    url = f"{ingested_url} password={SECRET}"  # trust auth ignores it; it must still never be written
    # No paths.root_dir: it defaults to ${hydra:runtime.cwd}, which a sweep must resolve before its jobs.
    args = ["train", "-m",
            f"paths.data_dir={SAMPLE_DATA}", f"paths.state_dir={tiny_state}", f"paths.log_dir={tmp / 'logs'}",
            "store=postgres", f"store.url='{url}'", *FAST, "logger=wandb", "logger.wandb.log_model=true",
            "data.batch_size=8",
            "data.limit.train=16", "data.limit.validation=4", "data.limit.test=0", f"data.cache_dir={tmp / 'data'}",
            "trainer.max_epochs=2", "module.samples=2", "module.max_new_tokens=8",
            "trainer.log_every_n_steps=1", "callbacks.throughput.log_every_n_steps=1",
            "callbacks.throughput.warmup_steps=0", f"optim.lr={','.join(LRS)}"]
    # each command in a process of its own, forked from the session's driver (tests/cli_batch.py)
    proc = shared_runner().run(args, tmp, env, timeout=600)
    (sweep_dir,) = (tmp / "logs" / "train" / "multiruns").iterdir()
    runs = shared_runner().run(["runs", f"dir={sweep_dir}", "sort_by=val/loss"], tmp, env, timeout=120)
    return {"proc": proc, "dir": sweep_dir, "runs": runs}


@pytest.mark.slow
def test_every_job_runs_and_a_failure_does_not_stop_the_others(sweep: dict[str, Any]) -> None:
    proc, sweep_dir = sweep["proc"], sweep["dir"]
    assert proc.returncode != 0  # Hydra reports the failed job at the end ...
    assert "Error executing job with overrides" in proc.stderr and "store.url=" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr  # ... with its overrides, the URL's password masked
    results = {int(p.name): read_result(p / "result.json") for p in sweep_dir.iterdir() if p.name.isdigit()}
    assert sorted(results) == [0, 1, 2]  # ... after running all three
    assert results[0].status == "failed" and "Invalid learning rate" in (results[0].error or "")
    for num in (1, 2):
        r = results[num]
        assert r.status == "ok", r.error
        assert f"optim.lr={LRS[num]}" in r.overrides and "model=tiny" in r.overrides
        assert not any(o.startswith(("store", "paths")) for o in r.overrides)  # where, not what
        assert r.optimized_metric == "val/loss" and r.value == r.metrics["val/loss"]
        assert r.metrics["train/loss_epoch"] > 0 and "data/train_examples" in r.metrics
    assert results[1].metrics["val/loss"] != results[2].metrics["val/loss"]


@pytest.mark.slow
def test_each_job_logs_its_redacted_config_and_metrics_to_wandb_offline(sweep: dict[str, Any]) -> None:
    sweep_dir = sweep["dir"]
    runs = {num: wandb_run(sweep_dir / str(num)) for num in (1, 2)}
    assert runs[1]["group"] == runs[2]["group"] == f"tiny-rag_qa/{sweep_dir.name}"  # side by side
    assert runs[1]["name"] != runs[2]["name"] and "optim.lr=0.003" in runs[1]["name"]
    assert "multirun" in runs[1]["tags"]
    for num, run in runs.items():
        assert run["config"]["optim"]["lr"] == float(LRS[num])
        assert "password=***" in run["config"]["store"]["url"]
        logged = {k for row in run["history"] for k in row}
        assert {"train/loss_step", "val/loss", "val/ppl", "train/supervised_tokens_per_sec"} <= logged
        models = [paths for kind, paths in run.get("artifacts", []) if kind == "model"]
        assert ["model.ckpt"] in models  # the checkpoints, logged as artifacts (logger.wandb.log_model=true)
        final = [row["val/loss"] for row in run["history"] if "val/loss" in row][-1]
        assert final == pytest.approx(read_result(sweep_dir / str(num) / "result.json").metrics["val/loss"])
    for path in sweep_dir.rglob("*"):  # nothing in any run folder holds the password
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.slow
def test_promptly_runs_tables_the_sweep_and_stars_the_best(sweep: dict[str, Any]) -> None:
    runs, sweep_dir = sweep["runs"], sweep["dir"]
    assert runs.returncode == 0, runs.stderr
    lines = [line for line in runs.stdout.splitlines() if line.startswith("│")]
    assert len(lines) == 3
    results = {n: read_result(sweep_dir / str(n) / "result.json") for n in (1, 2)}
    best = min(results, key=lambda n: results[n].metrics["val/loss"])
    assert "★" in lines[0] and f"optim.lr={LRS[best]}" in lines[0]
    assert "failed" in lines[2] and f"optim.lr={LRS[0]}" in lines[2]
    assert f"{results[best].metrics['val/loss']:.4g}" in lines[0]
