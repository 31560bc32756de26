"""Step-wise batched decoding for continuous batching: prefill, one decode step, join and leave.

The running batch is a left-padded KV cache (one row per sequence, `[rows, heads, width, head_dim]` per
layer) with its attention mask and each row's next position. Newcomers are prefilled together, alone
from the running rows, and their cache is then joined to the running one (the narrower side padded on
the left with masked zeros); finished rows are dropped, and columns that no remaining row uses are
trimmed, so the width follows the longest live sequence. Masked positions never reach a softmax, so a
row's logits are those of the sequence alone up to floating-point rounding (greedy answers equal
one-at-a-time answers; the tests check it on the tiny model).

Token choice is per row (`pick`): repetition penalty over the row's own prompt and answer, then greedy,
or temperature and top-p with the row's own seeded generator, so requests with different sampling
settings share one forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache

from promptly.model.config import SamplingConfig


@dataclass
class Running:
    """The running batch's tensors: row i is the i-th live sequence."""

    layers: list[tuple[torch.Tensor, torch.Tensor]]
    """Per layer, keys and values `[rows, heads, width, head_dim]` (left-padded)."""
    mask: torch.Tensor
    """`[rows, width]`: 1 where the cache holds a real token."""
    positions: torch.Tensor
    """`[rows]`: the position the row's next token takes (its real length so far)."""

    @property
    def rows(self) -> int:
        return int(self.mask.shape[0])

    @property
    def width(self) -> int:
        return int(self.mask.shape[1])


def _layers(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def _cache(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> DynamicCache:
    return DynamicCache(ddp_cache_data=layers)


@torch.no_grad()
def prefill(model: Any, prompts: Sequence[Sequence[int]], pad: int) -> tuple[Running, torch.Tensor]:
    """Run the prompts (left-padded together) through the model: their cache and last-token logits."""
    device = next(model.parameters()).device
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(list(prompt), dtype=torch.long)
        mask[row, width - len(prompt):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache()
    out = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                cache=cache, use_cache=True, logits_to_keep=1)
    running = Running(_layers(cache), mask.to(device), mask.sum(-1).to(device))
    return running, out.logits[:, -1, :].float()


@torch.no_grad()
def step(model: Any, running: Running, tokens: torch.Tensor) -> tuple[Running, torch.Tensor]:
    """Feed each row its last chosen token: the grown batch and the next-token logits `[rows, vocab]`."""
    mask = torch.cat([running.mask, torch.ones_like(running.mask[:, :1])], dim=1)
    cache = _cache(running.layers)
    out = model(input_ids=tokens.view(-1, 1), attention_mask=mask, position_ids=running.positions.view(-1, 1),
                cache=cache, use_cache=True, logits_to_keep=1)
    return Running(_layers(cache), mask, running.positions + 1), out.logits[:, -1, :].float()


def _pad_left(t: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    missing = width - t.shape[dim]
    if missing == 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)


def join(a: Running | None, b: Running) -> Running:
    """The rows of `a` then those of `b`, padded on the left to the wider of the two."""
    if a is None:
        return b
    width = max(a.width, b.width)
    layers = [(torch.cat([_pad_left(ka, width, 2), _pad_left(kb, width, 2)]),
               torch.cat([_pad_left(va, width, 2), _pad_left(vb, width, 2)]))
              for (ka, va), (kb, vb) in zip(a.layers, b.layers, strict=True)]
    return Running(layers, torch.cat([_pad_left(a.mask, width, 1), _pad_left(b.mask, width, 1)]),
                   torch.cat([a.positions, b.positions]))


def keep(running: Running, rows: list[int]) -> Running | None:
    """Only the given rows (in that order), without the leading columns none of them uses; None if no row."""
    if not rows:
        return None
    index = torch.tensor(rows, dtype=torch.long, device=running.mask.device)
    mask = running.mask.index_select(0, index)
    used = mask.any(dim=0).nonzero()
    start = int(used[0]) if len(used) else mask.shape[1]
    layers = [(k.index_select(0, index)[:, :, start:], v.index_select(0, index)[:, :, start:])
              for k, v in running.layers]
    return Running(layers, mask[:, start:], running.positions.index_select(0, index))


def pick(logits: torch.Tensor, samplings: Sequence[SamplingConfig], seen: Sequence[Sequence[int]],
         generators: Sequence[torch.Generator | None]) -> list[int]:
    """One token per row, each by its own settings (the order of transformers' logits processors:
    repetition penalty, then temperature and top-p)."""
    chosen: list[int] = []
    for row, cfg in enumerate(samplings):
        scores = logits[row]
        if cfg.repetition_penalty != 1.0 and seen[row]:
            ids = torch.tensor(sorted(set(seen[row])), dtype=torch.long, device=scores.device)
            picked = scores.gather(0, ids)
            picked = torch.where(picked < 0, picked * cfg.repetition_penalty, picked / cfg.repetition_penalty)
            scores = scores.scatter(0, ids, picked)
        if not cfg.do_sample:
            chosen.append(int(scores.argmax()))
            continue
        scores = scores / cfg.temperature
        if cfg.top_p < 1.0:
            ordered, order = scores.sort(descending=False)
            cumulative = ordered.softmax(-1).cumsum(-1)
            drop = cumulative <= 1 - cfg.top_p
            drop[-1] = False
            scores = scores.scatter(0, order[drop], float("-inf"))
        probs = scores.softmax(-1)
        chosen.append(int(torch.multinomial(probs, 1, generator=generators[row])))
    return chosen
