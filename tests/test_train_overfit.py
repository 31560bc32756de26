"""Learning, not just running: the tiny model learns 8 QA examples by heart (debug=overfit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import pytest

from promptly.verbs.train import train

from .test_train_common import FAST, _wandb_offline, location, tiny_state, train_config  # noqa: F401


class LossRecorder(L.Callback):
    """Collects every training step's loss (a test callback, added through the config like any other)."""

    losses: ClassVar[list[float]] = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        LossRecorder.losses.append(float(outputs["loss"]))


@pytest.mark.slow
def test_tiny_model_overfits_eight_examples(ingested_url: str, tiny_state: Path, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "run"
    LossRecorder.losses = []
    cfg = train_config([*location(tmp_path, tiny_state, ingested_url, out), *FAST, "debug=overfit",
                        "callbacks=none", f"+callbacks.record._target_={__name__}.LossRecorder",
                        "trainer.max_epochs=45", "trainer.check_val_every_n_epoch=45"], out)  # 45 of debug's 60
    metrics, objects = train(cfg)
    assert objects["datamodule"].stats["train"]["examples"] == 8
    losses = LossRecorder.losses
    assert len(losses) == cfg.trainer.max_epochs  # 8 examples: one batch per epoch
    assert losses[0] > 5.0  # a random model over a 2048-token vocabulary: about ln(2048) = 7.6
    assert losses[-1] < 0.02 * losses[0], losses[::10]
    assert metrics["val/loss"] < 0.1
    rows = objects["module"].last_samples
    assert len(rows) == 8
    assert sum(r["exact_match"] for r in rows) >= 7, [(r["reference"], r["generated"]) for r in rows]
    print(f"overfit: loss {losses[0]:.3f} -> {losses[-1]:.4f}, exact match "
          f"{sum(r['exact_match'] for r in rows):.0f}/8")
