"""Step-wise batched decoding for continuous batching: prefill, one decode step, join and leave.

The running batch is a left-padded KV cache (one row per sequence, `[rows, heads, width, head_dim]` per
layer) with its attention mask and each row's next position. Newcomers are prefilled together, alone
from the running rows, and their cache is then joined to the running one (the narrower side padded on
the left with masked zeros); finished rows are dropped, and columns that no remaining row uses are
trimmed, so the width follows the longest live sequence. Each layer's keys and values sit in a buffer with
spare columns past the width, which a decode step writes its token into in place: growing the cache by
concatenation copied the whole cache every step (29 % of an 8-row SmolLM2 step on the CPU,
benchmarks/README.md). Masked positions never reach a softmax, so a
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
from transformers import Cache
from transformers.cache_utils import DynamicLayer

from promptly.model.config import SamplingConfig

SPARE_COLUMNS = 64
"""Columns a cache buffer keeps free past its width: one reallocation every 64 decode steps."""


@dataclass
class Running:
    """The running batch's tensors: row i is the i-th live sequence."""

    layers: list[tuple[torch.Tensor, torch.Tensor]]
    """Per layer, key and value buffers `[rows, heads, capacity, head_dim]`: the first `width` columns hold the
    (left-padded) cache, the rest are free for the next steps."""
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


class _BufferedLayer(DynamicLayer):
    """A DynamicLayer whose keys and values are views of buffers with spare columns: `update` writes the new
    positions in place and reallocates (with SPARE_COLUMNS more) only when the buffer is full."""

    def __init__(self, keys: torch.Tensor | None = None, values: torch.Tensor | None = None, used: int = 0) -> None:
        super().__init__()
        self.buffers = (keys, values)
        if keys is not None and values is not None:
            self.is_initialized, self.device = True, keys.device
            self.keys, self.values = keys[:, :, :used], values[:, :, :used]

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self.buffers = (_with_spare(key_states[:, :, :0], 0), _with_spare(value_states[:, :, :0], 0))

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        used, new = self.get_seq_length(), key_states.shape[-2]
        keys, values = self.buffers
        assert keys is not None and values is not None
        if used + new > keys.shape[-2]:
            keys, values = _with_spare(keys[:, :, :used], new), _with_spare(values[:, :, :used], new)
            self.buffers = (keys, values)
        keys[:, :, used:used + new] = key_states
        values[:, :, used:used + new] = value_states
        self.keys, self.values = keys[:, :, :used + new], values[:, :, :used + new]
        return self.keys, self.values


def _with_spare(t: torch.Tensor, more: int) -> torch.Tensor:
    """A copy of `[rows, heads, width, head_dim]` in a buffer with room for `more` + SPARE_COLUMNS columns."""
    shape = list(t.shape)
    shape[2] += more + SPARE_COLUMNS
    buffer = t.new_empty(shape)
    buffer[:, :, :t.shape[2]] = t
    return buffer


def _cache(layers: list[tuple[torch.Tensor, torch.Tensor]] | None = None, width: int = 0) -> Cache:
    if layers is None:
        return Cache(layer_class_to_replicate=_BufferedLayer)
    return Cache(layers=[_BufferedLayer(k, v, width) for k, v in layers])


def _layers(cache: Cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [layer.buffers for layer in cache.layers]  # type: ignore[union-attr]


def _used(running: Running) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each layer's keys and values without the spare columns."""
    return [(k[:, :, :running.width], v[:, :, :running.width]) for k, v in running.layers]


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
    cache = _cache()
    out = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                cache=cache, use_cache=True, logits_to_keep=1)
    running = Running(_layers(cache), mask.to(device), mask.sum(-1).to(device))
    return running, out.logits[:, -1, :].float()


@torch.no_grad()
def step(model: Any, running: Running, tokens: torch.Tensor) -> tuple[Running, torch.Tensor]:
    """Feed each row its last chosen token: the grown batch and the next-token logits `[rows, vocab]`."""
    mask = torch.cat([running.mask, torch.ones_like(running.mask[:, :1])], dim=1)
    cache = _cache(running.layers, running.width)
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
    layers = [(_with_spare(torch.cat([_pad_left(ka, width, 2), _pad_left(kb, width, 2)]), 0),
               _with_spare(torch.cat([_pad_left(va, width, 2), _pad_left(vb, width, 2)]), 0))
              for (ka, va), (kb, vb) in zip(_used(a), _used(b), strict=True)]
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
    layers = [(_with_spare(k[:, :, start:].index_select(0, index), 0),
               _with_spare(v[:, :, start:].index_select(0, index), 0)) for k, v in _used(running)]
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
