"""Batched generation with left padding, and answer-token loss of reference answers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from promptly.evaluation.metrics import answer_token_nll


@dataclass(frozen=True)
class SamplingConfig:
    """How answers are generated: greedy by default, so a report can be reproduced."""

    batch_size: int = 16
    """Prompts generated together (left-padded); 1 is one-at-a-time."""
    max_new_tokens: int = 64
    """Longest answer, in tokens."""
    do_sample: bool = False
    """Sample instead of greedy decoding."""
    temperature: float = 0.7
    """Sampling temperature (only with do_sample)."""
    top_p: float = 0.95
    """Nucleus sampling mass (only with do_sample)."""
    seed: int = 0
    """Seeds sampling."""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError("eval.generation.batch_size and max_new_tokens must be at least 1")
        if self.do_sample and not (self.temperature > 0 and 0 < self.top_p <= 1):
            raise ValueError("sampling needs temperature > 0 and 0 < top_p <= 1")


def _pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError("the tokenizer has neither a pad nor an eos token")
    return int(pad)


def _batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped by similar length (longest first), so left padding stays small."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@torch.no_grad()
def generate_answers(model: Any, tokenizer: Any, prompts: Sequence[Sequence[int]], cfg: SamplingConfig,
                     device: torch.device | str = "cpu", on_batch: Callable[[int], None] | None = None) -> list[str]:
    """Answers for token-id prompts, in their order; generation stops at eos."""
    pad = _pad_id(tokenizer)
    eos = tokenizer.eos_token_id
    answers: list[str] = [""] * len(prompts)
    was_training = model.training
    model.eval()
    if cfg.do_sample:
        torch.manual_seed(cfg.seed)
    try:
        for idx in _batches([len(p) for p in prompts], cfg.batch_size):
            width = max(len(prompts[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                p = list(prompts[i])
                ids[row, width - len(p):] = torch.tensor(p)
                mask[row, width - len(p):] = 1
            kwargs: dict[str, Any] = {"do_sample": cfg.do_sample}
            if cfg.do_sample:
                kwargs.update(temperature=cfg.temperature, top_p=cfg.top_p)
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                 max_new_tokens=cfg.max_new_tokens, num_beams=1, eos_token_id=eos,
                                 pad_token_id=pad, use_cache=True, **kwargs)
            for row, i in enumerate(idx):
                answers[i] = tokenizer.decode(out[row, width:], skip_special_tokens=True).strip()
            if on_batch:
                on_batch(len(idx))
    finally:
        model.train(was_training)
    return answers


@torch.no_grad()
def reference_nll(model: Any, tokenizer: Any, sequences: Sequence[tuple[Sequence[int], int]], batch_size: int,
                  device: torch.device | str = "cpu") -> list[tuple[float, int]]:
    """(summed NLL, token count) of each reference answer given its prompt: (input_ids, prompt_len) pairs.

    Right-padded; prompt and padding positions carry label -100, so only answer tokens count.
    """
    pad = _pad_id(tokenizer)
    out: list[tuple[float, int]] = [(0.0, 0)] * len(sequences)
    was_training = model.training
    model.eval()
    try:
        for idx in _batches([len(s) for s, _ in sequences], batch_size):
            width = max(len(sequences[i][0]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            labels = torch.full((len(idx), width), -100, dtype=torch.long)
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
