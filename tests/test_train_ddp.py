"""Scale-out for real: `trainer=ddp` on two CPU processes (gloo) with the tiny model.

Lightning's ddp strategy re-launches the process's command line for rank 1, so the runs go through a
subprocess: the first through the promptly command itself (`python -m promptly train`, the README's way),
whose re-launched ranks must still know their verb, the others through the verb's own module
(`python -m promptly.verbs.train <overrides>`).
Each rank records, per batch, the examples it saw (a hash of each example's tokens) and its loss. One
two-process run is killed right after step 3 (a preempted machine) and resumed from its last.ckpt (step 2);
one process with the same global batch (batch b, two accumulated micro-batches) is the reference. The
checks: the resumed run repeats the interrupted step exactly and goes on to the end; every rank gets its own
share of each epoch's batch plan and nothing is seen twice; and the two ranks, across the crash, saw the same
examples in the same steps with the same losses as the one process.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest

from promptly.data.batching import plan_batches
from promptly.data.config import Batching

from .cli_batch import shared_runner
from .test_train_common import FAST, REPO_ROOT, SAMPLE_DATA, tiny_state  # noqa: F401

RECORD = "steps.rank{rank}.jsonl"


class RankRecorder(L.Callback):
    """Writes one line per training batch: rank, epoch, step, loss (as the module computed it, before
    Lightning divides it for accumulation) and a hash of each example in the batch."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        ids, mask = batch["input_ids"].cpu().numpy(), batch["attention_mask"].cpu().numpy()
        examples = [hashlib.sha1(row[: int(m.sum())].tobytes()).hexdigest()[:16] for row, m in zip(ids, mask,
                                                                                                     strict=True)]
        line = {"rank": trainer.global_rank, "world": trainer.world_size, "epoch": trainer.current_epoch,
                "step": trainer.global_step, "loss": float(outputs["loss"]) * trainer.accumulate_grad_batches,
                "examples": examples}
        path = Path(trainer.default_root_dir) / RECORD.format(rank=trainer.global_rank)
        with path.open("a") as f:
            f.write(json.dumps(line) + "\n")


class CrashAt(L.Callback):
    """Every rank fails right after optimizer step 3 (a preempted machine)."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step == 3:
            raise RuntimeError("simulated crash")


def test_each_rank_gets_its_own_share_of_every_batch_plan() -> None:
    """plan_batches alone (no processes): the ranks' plans partition the one-process plan's batches."""
    lengths = np.random.default_rng(0).integers(10, 200, size=103)
    for batching in (Batching.grouped, Batching.padded, Batching.packed):
        for epoch in range(3):
            whole = plan_batches(lengths, batching, 4, 256, True, 42, epoch)
            shares = [plan_batches(lengths, batching, 4, 256, True, 42, epoch, rank, 2) for rank in range(2)]
            assert len(shares[0]) == len(shares[1]) == len(whole) // 2  # same number of steps on every rank
            interleaved = [b for pair in zip(*shares, strict=True) for b in pair]
            assert interleaved == whole[: len(interleaved)]  # step k: rank r takes batch 2k + r
            seen = [i for batch in interleaved for row in batch for i in row]
            assert len(seen) == len(set(seen))


def run_cli(name: str, tmp: Path, store_url: str, state: Path, *overrides: str,
            module: str | None = "promptly.verbs.train") -> tuple[subprocess.CompletedProcess[str], Path]:
    """One training run in a process of its own: `python -m <module>`, or with module=None the `promptly`
    command as a user types it, forked from the session's driver (tests/cli_batch.py). Lightning's ddp
    re-launches the other ranks from the command line it was started with (`python -m ...` or the script)."""
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    prefix = [sys.executable, "-m", module] if module else []
    if module in (None, "promptly", "promptly.verbs.cli"):
        prefix.append("train")
    args = [*prefix, f"paths.data_dir={SAMPLE_DATA}", f"paths.state_dir={state}",
            f"paths.log_dir={tmp / 'logs' / name}", "store=postgres", f"store.url='{store_url}'",
            "experiment=tiny_causal_lm", *FAST, "data.max_length=128", "data.batching=grouped",
            "data.limit.train=32", "data.limit.validation=8", "data.limit.test=0", "data.eval_batch_size=2",
            "trainer.max_epochs=2", "trainer.num_sanity_val_steps=0", "trainer.log_every_n_steps=1",
            "callbacks.last_checkpoint.every_n_train_steps=2", "scheduler=constant",
            f"+callbacks.record._target_={__name__}.RankRecorder", *overrides]
    # A re-launched rank that does not know its verb exits, and rank 0 then waits for its process group (30
    # minutes): a timeout of a few times a run's length turns that into a failure.
    proc = (subprocess.run(args, cwd=tmp, env=env, capture_output=True, text=True, timeout=300) if module
            else shared_runner().run(args, tmp, env, timeout=300, argv0=str(Path(sys.executable).parent / "promptly")))
    assert "unknown verb" not in proc.stdout + proc.stderr, proc.stderr[-4000:]
    runs = list((tmp / "logs" / name / "train" / "runs").glob("*"))
    assert len(runs) == 1, proc.stderr[-4000:]
    return proc, runs[0]


def records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for p in sorted(run_dir.glob("steps.rank*.jsonl")) for line in p.read_text().splitlines()]



DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"]


def by_rank(lines: list[dict[str, Any]], rank: int) -> list[dict[str, Any]]:
    return [r for r in lines if r["rank"] == rank]


@pytest.fixture(scope="module")
def ddp_runs(ingested_url: str, tiny_state: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:  # noqa: F811
    """Two CPU processes of batch 4 (a global batch of 8), two epochs of four steps: started as
    `promptly train trainer=ddp ...` (`run_cli` fails on "unknown verb" and on a rank left waiting), killed
    after step 3, resumed from last.ckpt; and one process of batch 4 accumulating two micro-batches."""
    tmp = tmp_path_factory.mktemp("ddp")
    crashed, crashed_dir = run_cli("crashed", tmp, ingested_url, tiny_state, *DDP, "data.batch_size=4",
                                   f"+callbacks.crash._target_={__name__}.CrashAt", module="promptly")
    last = crashed_dir / "checkpoints" / "last.ckpt"
    resumed, resumed_dir = run_cli("resumed", tmp, ingested_url, tiny_state, *DDP, "data.batch_size=4",
                                   f"ckpt_path={last}", module=None)
    one, one_dir = run_cli("one", tmp, ingested_url, tiny_state, "data.batch_size=4",
                           "trainer.accumulate_grad_batches=2", module=None)
    return {"crashed": crashed, "crashed_lines": records(crashed_dir), "last": last, "resumed": resumed,
            "resumed_dir": resumed_dir, "resumed_lines": records(resumed_dir), "one": one, "one_dir": one_dir,
            "one_lines": records(one_dir)}


@pytest.mark.slow
def test_a_killed_two_process_run_resumes_where_it_stopped(ddp_runs: dict[str, Any]) -> None:
    crashed = ddp_runs["crashed"]
    assert crashed.returncode != 0 and "simulated crash" in crashed.stderr, crashed.stderr[-4000:]
    assert ddp_runs["last"].is_file()
    assert ddp_runs["resumed"].returncode == 0, ddp_runs["resumed"].stderr[-4000:]
    for rank in (0, 1):
        before = by_rank(ddp_runs["crashed_lines"], rank)
        after = by_rank(ddp_runs["resumed_lines"], rank)
        assert [r["step"] for r in before] == [1, 2, 3]  # both ranks ran (rank 1 re-launched), then the crash
        assert [r["step"] for r in after] == list(range(3, 9))  # from the checkpoint at step 2, mid-epoch 0
        # the step the crash interrupted is repeated exactly: same examples, same loss
        assert after[0]["examples"] == before[2]["examples"]
        assert after[0]["loss"] == pytest.approx(before[2]["loss"], rel=1e-4)


@pytest.mark.slow
def test_two_processes_share_each_epoch_and_learn_as_one_process_with_the_same_global_batch(
        ddp_runs: dict[str, Any]) -> None:
    """Steps 1-2 of the killed run and 3-8 of its resumed run: one two-process run across the crash."""
    assert ddp_runs["one"].returncode == 0, ddp_runs["one"].stderr[-4000:]
    lines = [r for r in ddp_runs["crashed_lines"] if r["step"] <= 2] + ddp_runs["resumed_lines"]
    ranks = [by_rank(lines, 0), by_rank(lines, 1)]
    for rank in ranks:
        assert [r["step"] for r in rank] == list(range(1, 9)) and {r["world"] for r in rank} == {2}
    single = ddp_runs["one_lines"]
    assert len(single) == 16 and {r["world"] for r in single} == {1}
    for epoch in (0, 1):
        shares = [[e for r in rank if r["epoch"] == epoch for e in r["examples"]] for rank in ranks]
        assert len(shares[0]) == len(shares[1]) == 16
        assert len(set(shares[0] + shares[1])) == 32  # nothing seen twice, on one rank or across ranks
        assert set(shares[0] + shares[1]) == {e for r in single if r["epoch"] == epoch for e in r["examples"]}
    # Step k of the two ranks is micro-batches 2k-1 and 2k of the one process: same examples, same losses.
    for k in range(8):
        for rank in (0, 1):
            micro = single[2 * k + rank]
            assert ranks[rank][k]["examples"] == micro["examples"], (k, rank)
            assert ranks[rank][k]["loss"] == pytest.approx(micro["loss"], rel=1e-4), (k, rank)
    assert ranks[0][-1]["loss"] < ranks[0][0]["loss"] - 0.5  # and it did learn
    val = [json.loads((d / "result.json").read_text())["metrics"]["val/loss"]
           for d in (ddp_runs["resumed_dir"], ddp_runs["one_dir"])]
    assert val[0] == pytest.approx(val[1], rel=1e-4)  # every validation example counted once across ranks
