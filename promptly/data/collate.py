"""Rows of token examples -> model inputs with prompt-masked labels.

Unpacked rows: right padding, a 0/1 attention_mask, labels IGNORE_INDEX on prompt and padding tokens.
Packed rows: no attention_mask; position_ids restart at 0 for every example (and for the padding
tail), which transformers turns into a block-diagonal causal mask (or varlen boundaries for
flash-attention), so no token attends across examples. The first token of every example is a
prompt token or unsupervised, so no label crosses an example boundary either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

IGNORE_INDEX = -100
"""The label of a token outside the loss (prompt, padding): PyTorch's and transformers' default ignore_index."""
Row = Sequence[tuple[np.ndarray, int]]


@dataclass
class Collator:
    """Collate function for one batching mode; `pad_to_multiple_of` rounds the padded length up."""

    pad_token_id: int
    packed: bool
    pad_to_multiple_of: int | None = None

    def __call__(self, rows: Sequence[Row]) -> dict[str, torch.Tensor]:
        lengths = [sum(len(ids) for ids, _ in row) for row in rows]
        width = max(lengths)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = np.full((len(rows), width), self.pad_token_id, dtype=np.int64)
        labels = np.full((len(rows), width), IGNORE_INDEX, dtype=np.int64)
        positions = np.zeros((len(rows), width), dtype=np.int64)
        attention = np.zeros((len(rows), width), dtype=np.int64)
        for r, row in enumerate(rows):
            at = 0
            for ids, prompt_len in row:
                n = len(ids)
                input_ids[r, at : at + n] = ids
                labels[r, at + prompt_len : at + n] = ids[prompt_len:]
                positions[r, at : at + n] = np.arange(n)
                at += n
            attention[r, :at] = 1
            positions[r, at:] = np.arange(width - at)
        batch = {
            "input_ids": torch.from_numpy(input_ids),
            "labels": torch.from_numpy(labels),
            "n_supervised": torch.tensor(int((labels[:, 1:] != IGNORE_INDEX).sum())),
            "n_examples": torch.tensor(sum(len(row) for row in rows)),
            "n_tokens": torch.tensor(sum(lengths)),
            "seq_lengths": torch.tensor([len(ids) for row in rows for ids, _ in row]),
        }
        if self.packed:
            batch["position_ids"] = torch.from_numpy(positions)
        else:
            batch["attention_mask"] = torch.from_numpy(attention)
        return batch
