"""Answer-token loss of reference answers given their prompts: the reference perplexity of a report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from promptly.data.collate import IGNORE_INDEX
from promptly.evaluation.metrics import answer_token_nll
from promptly.model.generation import length_batches, pad_id


@torch.no_grad()
def reference_nll(model: Any, tokenizer: Any, sequences: Sequence[tuple[Sequence[int], int]],
                  batch_size: int) -> list[tuple[float, int]]:
    """(summed NLL, token count) of each reference answer given its prompt: (input_ids, prompt_len) pairs.

    Right-padded; prompt and padding positions carry IGNORE_INDEX, so only answer tokens count.
    """
    pad = pad_id(tokenizer)
    device = next(model.parameters()).device
    out: list[tuple[float, int]] = [(0.0, 0)] * len(sequences)
    was_training = model.training
    model.eval()
    try:
        for idx in length_batches([len(s) for s, _ in sequences], batch_size):
            width = max(len(sequences[i][0]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            labels = torch.full((len(idx), width), IGNORE_INDEX, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                seq, prompt_len = list(sequences[i][0]), sequences[i][1]
                ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
                labels[row, prompt_len : len(seq)] = torch.tensor(seq[prompt_len:])
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            nll, tokens = answer_token_nll(logits, labels.to(device))
            for row, i in enumerate(idx):
                out[i] = (float(nll[row]), int(tokens[row]))
    finally:
        model.train(was_training)
    return out
