"""The training loss leaves out the padding mask of right-padded rows (SDPA then runs its causal kernel):
the loss and every gradient must equal those computed with the mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from promptly.data.collate import Collator
from promptly.model.config import TinyConfig
from promptly.model.factory import ModelFactory
from promptly.model.loss import supervised_loss

from .test_train_common import SAMPLE_DATA, tiny_state  # noqa: F401

FULL = {"method": "full", "r": None, "alpha": None, "dropout": None, "target_modules": None}


def test_right_padded_rows_give_the_same_loss_and_gradients_without_the_mask(tiny_state: Path) -> None:  # noqa: F811
    tiny = TinyConfig(corpus_dir=str(SAMPLE_DATA), cache_dir=str(tiny_state / "tiny"), num_hidden_layers=2)
    model = ModelFactory("tiny", peft=FULL, tiny=tiny).build()
    model.eval()  # no dropout: both passes see the same network
    rng = np.random.default_rng(0)
    rows = [[(rng.integers(3, 2000, n), n // 2)] for n in (40, 23, 31, 12)]  # very different lengths: padding
    batch = Collator(pad_token_id=0, packed=False)(rows)
    assert int(batch["attention_mask"].sum()) < batch["attention_mask"].numel()

    def loss_and_grads(right_padded: bool) -> tuple[float, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        loss_sum, n = supervised_loss(model, batch, right_padded=right_padded)
        (loss_sum / n).backward()
        return float(loss_sum / n), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    masked, masked_grads = loss_and_grads(False)
    causal, causal_grads = loss_and_grads(True)
    assert causal == pytest.approx(masked, rel=1e-6)
    assert len(causal_grads) == len(masked_grads) > 0
    for a, b in zip(causal_grads, masked_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
