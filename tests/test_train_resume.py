"""A run killed mid-epoch resumes from last.ckpt and ends exactly where an uninterrupted run ends:
same batches (resumable dataloader), same optimizer/scheduler state, same dropout draws (RNG state)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import pytest
import torch

from promptly.utils.results import read_result
from promptly.verbs.train import train

from .test_train_common import FAST, _wandb_offline, location, tiny_state, train_config  # noqa: F401

CRASH_AT = 7


class CrashAt(L.Callback):
    """Simulates a crash (a preempted machine) right after optimizer step CRASH_AT."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step == CRASH_AT:
            raise RuntimeError("simulated crash")


class StepLog(L.Callback):
    """Records (global step after the batch, loss) for every training batch of the run."""

    steps: ClassVar[list[tuple[int, float]]] = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        StepLog.steps.append((trainer.global_step, float(outputs["loss"])))


def trainable(objects: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in objects["module"].named_parameters() if p.requires_grad}


@pytest.mark.slow
def test_killed_run_resumes_from_last_checkpoint_to_the_same_end(
        ingested_url: str, tiny_state: Path, tmp_path: Path) -> None:  # noqa: F811
    common = [*FAST, "model/peft=lora", "model.peft.r=4", "model.peft.dropout=0.1",
              "model.peft.target_modules=[q_proj,v_proj,o_proj]", "data.batch_size=4",
              "data.limit.train=24", "data.limit.validation=4", "data.limit.test=0",
              f"data.cache_dir={tmp_path / 'data'}", "trainer.max_epochs=2", "module.samples=0",
              "callbacks.last_checkpoint.every_n_train_steps=4", "optim.lr=1e-2",
              f"+callbacks.steps._target_={__name__}.StepLog"]

    def run(name: str, *extra: str) -> tuple[dict[str, float], dict[str, Any]]:
        out = tmp_path / name
        StepLog.steps = []
        return train(train_config([*location(tmp_path, tiny_state, ingested_url, out), *common, *extra], out))

    metrics_a, objects_a = run("uninterrupted")
    steps_a = StepLog.steps
    assert [s for s, _ in steps_a] == list(range(1, 13))  # 24 examples / 4 per batch x 2 epochs

    with pytest.raises(RuntimeError, match="simulated crash"):
        run("crashed", f"+callbacks.crash._target_={__name__}.CrashAt")
    crashed = tmp_path / "crashed"
    assert read_result(crashed / "result.json").status == "failed"
    last = crashed / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 4  # mid-epoch: the first epoch has 6 steps
    assert ckpt["state_dict"] and all("lora_" in k for k in ckpt["state_dict"])  # adapters only
    assert ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 0, "consumed": 4}]

    metrics_c, objects_c = run("resumed", f"ckpt_path={last}")
    steps_c = StepLog.steps
    assert [s for s, _ in steps_c] == list(range(5, 13))  # continues at step 5, not at 1 or 7
    for (step, loss_a), (_, loss_c) in zip(steps_a[4:], steps_c, strict=True):
        assert loss_c == pytest.approx(loss_a, rel=1e-4, abs=1e-6), step
    weights_a, weights_c = trainable(objects_a), trainable(objects_c)
    assert weights_a.keys() == weights_c.keys()
    for name in weights_a:
        torch.testing.assert_close(weights_c[name], weights_a[name], rtol=1e-4, atol=1e-6, msg=name)
    assert metrics_c["val/loss"] == pytest.approx(metrics_a["val/loss"], rel=1e-4)
    # and training did move the adapters (B starts at zero)
    assert any(float(w.abs().sum()) > 0 for n, w in weights_a.items() if "lora_B" in n)
