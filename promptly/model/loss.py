"""The masked next-token loss, computing the LM head only where a label is supervised.

Prompt tokens are most of a RAG example, and the head (hidden x vocab) is a large share of a small
model's compute: projecting only the supervised positions gives the same loss as the full forward
(tests/test_data_masking.py checks it) for less work.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F

from promptly.data.collate import IGNORE_INDEX

# Heads that transform logits after the projection; those models go through the full forward.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")

MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids")


def _parts(model: Any) -> tuple[Any, Any] | None:
    """(decoder, head) when the head is a plain projection of the decoder's last hidden state."""
    config = getattr(model, "config", None)
    if config is None or any(getattr(config, a, None) not in (None, 1, 1.0) for a in _LOGIT_TRANSFORMS):
        return None
    try:
        decoder, head = model.get_decoder(), model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    if decoder is None or head is None or decoder is model:
        return None
    return decoder, head


def supervised_loss(model: Any, batch: dict[str, torch.Tensor], head_only_on_labels: bool = True,
                    right_padded: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of token losses, number of supervised tokens) for a batch from promptly's collator.

    promptly's Collator pads unpacked rows on the right (`right_padded`): under the causal mask no real
    token attends to a later position, so the padding mask changes nothing the loss reads, and it is left
    out. Without it SDPA runs its causal kernel, which skips the masked upper triangle: attention, the
    largest cost of a step on the CPU, does about half the work (benchmarks/README.md).
    """
    inputs = {k: batch[k] for k in MODEL_INPUTS if k in batch}
    if right_padded and "position_ids" not in inputs:
        inputs.pop("attention_mask", None)
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE_INDEX
    n = keep.sum()
    parts = _parts(model) if head_only_on_labels else None
    with _adapter_inputs_as_they_come(model, batch["input_ids"].device.type):
        if parts is not None:
            decoder, head = parts
            hidden = decoder(**inputs, use_cache=False).last_hidden_state
            logits = head(hidden[:, :-1][keep])
        else:
            logits = model(**inputs, use_cache=False).logits[:, :-1][keep]
    loss_sum = F.cross_entropy(logits.float(), targets[keep], reduction="sum")
    return loss_sum, n


def _adapter_inputs_as_they_come(model: Any, device_type: str) -> contextlib.AbstractContextManager[Any]:
    """Under autocast, PEFT's cast of each LoRA layer's input to the adapter's fp32 weight dtype is undone by
    autocast itself (the adapter's matmul runs in bf16/fp16 anyway): two copies of an activation per adapted
    layer, forward and backward. Off for the forward, on again after (generation outside autocast needs it).
    Identical values without LoRA dropout; with it, dropout's product is rounded to bf16 directly instead of
    after fp32 (a bf16 ulp apart here and there, the same masks). SmolLM2 LoRA step on the CPU: about 4 %
    (benchmarks/README.md). Left on under
    activation checkpointing: its recomputation runs in the backward, after this forward, and must save
    tensors of the same dtypes as the forward did (LoRA dropout saves its input)."""
    if not torch.is_autocast_enabled(device_type):
        return contextlib.nullcontext()
    if any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules()):
        return contextlib.nullcontext()
    from peft.helpers import disable_input_dtype_casting

    return disable_input_dtype_casting(model)
