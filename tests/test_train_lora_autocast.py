"""Under autocast the training loss hands each LoRA layer its input in the autocast dtype (PEFT would copy it to
the adapter's fp32 weight dtype, only for autocast to copy it back): without LoRA dropout the loss and the
adapters' gradients must equal PEFT's own forward, and generation outside autocast must still work afterwards.
Under activation checkpointing PEFT's cast stays: the recomputation in the backward must save what the forward
saved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from peft.tuners.tuners_utils import BaseTunerLayer

from promptly.data.collate import Collator
from promptly.model.config import TinyConfig
from promptly.model.factory import ModelFactory
from promptly.model.loss import supervised_loss

from .test_train_common import SAMPLE_DATA, tiny_state  # noqa: F401

LORA = {"method": "lora", "r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}


def test_lora_inputs_stay_bf16_under_autocast_with_the_same_loss_and_gradients(tiny_state: Path) -> None:  # noqa: F811
    tiny = TinyConfig(corpus_dir=str(SAMPLE_DATA), cache_dir=str(tiny_state / "tiny"), num_hidden_layers=2)
    model = ModelFactory("tiny", peft=LORA, tiny=tiny, dtype="bfloat16").build()
    model.eval()
    adapters: list[Any] = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    assert adapters and all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    rng = np.random.default_rng(0)
    batch = Collator(pad_token_id=0, packed=False)([[(rng.integers(3, 2000, n), n // 2)] for n in (40, 23, 31)])

    seen: list[torch.dtype] = []
    first_a = adapters[0].lora_A["default"]
    hook = first_a.register_forward_pre_hook(lambda _m, args: seen.append(args[0].dtype))

    def grads() -> list[torch.Tensor]:
        out = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        model.zero_grad(set_to_none=True)
        return out

    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss_sum, n = supervised_loss(model, batch, head_only_on_labels=False, right_padded=False)
    (loss_sum / n).backward()
    ours = grads()
    assert seen[-1] == torch.bfloat16  # PEFT's cast would hand the adapter float32
    assert all(m.cast_input_dtype_enabled for m in adapters)  # restored for generation outside autocast

    with torch.autocast("cpu", dtype=torch.bfloat16):  # PEFT's own path: input cast to the adapters' fp32
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    targets = batch["labels"][:, 1:]
    keep = targets != -100
    reference = F.cross_entropy(logits[:, :-1][keep].float(), targets[keep], reduction="sum")
    (reference / n).backward()
    theirs = grads()
    assert seen[-1] == torch.float32
    assert float(loss_sum.detach()) == pytest.approx(float(reference.detach()), rel=1e-6)
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    hook.remove()

    with torch.no_grad():  # bf16 base, fp32 adapters, no autocast: PEFT's cast is what makes this work
        generated = model.generate(input_ids=batch["input_ids"][:1, :8], max_new_tokens=3, do_sample=False)
    assert generated.shape[1] == 11


def test_activation_checkpointing_keeps_peft_s_cast_so_its_recomputation_matches(tiny_state: Path) -> None:  # noqa: F811
    tiny = TinyConfig(corpus_dir=str(SAMPLE_DATA), cache_dir=str(tiny_state / "tiny"), num_hidden_layers=2)
    model = ModelFactory("tiny", peft={**LORA, "dropout": 0.1}, tiny=tiny, dtype="bfloat16",
                         gradient_checkpointing=True).build()
    model.train()  # dropout on: it saves its input, whose dtype the recomputation must reproduce
    rng = np.random.default_rng(1)
    batch = Collator(pad_token_id=0, packed=False)([[(rng.integers(3, 2000, n), n // 2)] for n in (40, 23)])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss_sum, n = supervised_loss(model, batch)
    (loss_sum / n).backward()  # a CheckpointError if the forward and its recomputation saved other dtypes
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
