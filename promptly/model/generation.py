"""The one generate: batched, left-padded, greedy or sampled, with a per-token callback for streaming.

Evaluation, validation samples, `promptly ask`, the server and the bias probes all call `generate`, so an
answer does not depend on which of them asked. Also the answer-similarity helpers of validation samples.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import torch

from promptly.errors import ConfigError
from promptly.model.config import SamplingConfig

_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")

TokenCallback = Callable[[int, int], None]
"""Called as (prompt index, token id) for each new token, in generation order (eos excluded)."""


def pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ConfigError("the tokenizer has neither a pad nor an eos token")
    return int(pad)


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped by similar length (longest first), so padding stays small."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


class _TokenStreamer:
    """A transformers streamer that hands each row's new tokens to `on_token` until the row ends."""

    def __init__(self, rows: Sequence[int], stop_ids: set[int], on_token: TokenCallback) -> None:
        self.rows, self.stop_ids, self.on_token = list(rows), stop_ids, on_token
        self.prompt_seen = False
        self.done = [False] * len(rows)

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate() first passes the prompt
            self.prompt_seen = True
            return
        for row, token in enumerate(value.reshape(len(self.rows), -1)[:, -1].tolist()):
            if self.done[row]:
                continue
            if token in self.stop_ids:
                self.done[row] = True
            else:
                self.on_token(self.rows[row], int(token))

    def end(self) -> None:
        pass


def _stop_ids(model: Any, tokenizer: Any) -> set[int]:
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids |= set(configured) if isinstance(configured, list | tuple) else {configured}
    return {int(i) for i in ids if i is not None}


@torch.no_grad()
def generate(model: Any, tokenizer: Any, prompts: Sequence[Sequence[int]], cfg: SamplingConfig,
             on_token: TokenCallback | None = None, on_batch: Callable[[int], None] | None = None,
             stop_strings: Sequence[str] = ()) -> list[str]:
    """Answers for token-id prompts, in their order; each stops at the model's or tokenizer's eos, or
    after the first of `stop_strings` (kept in the answer: a judge's or QA generator's one-line reply).

    Prompts of similar length are generated together (left-padded, masked), so a batch costs little
    more than its longest prompt; greedy answers equal one-at-a-time answers.
    """
    if not prompts:
        return []
    pad = pad_id(tokenizer)
    stop = _stop_ids(model, tokenizer)
    device = next(model.parameters()).device
    answers: list[str] = [""] * len(prompts)
    was_training = model.training
    model.eval()
    generator_state = torch.random.get_rng_state()
    if cfg.do_sample:
        torch.manual_seed(cfg.seed)
    try:
        for idx in length_batches([len(p) for p in prompts], cfg.batch_size):
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
            else:  # the model's own generation_config may ask for sampling: greedy means greedy
                kwargs.update(temperature=None, top_p=None, top_k=None)
            if cfg.repetition_penalty != 1.0:
                kwargs["repetition_penalty"] = cfg.repetition_penalty
            if on_token is not None:
                kwargs["streamer"] = _TokenStreamer(idx, stop, on_token)
            if stop_strings:
                kwargs.update(stop_strings=list(stop_strings), tokenizer=tokenizer)
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                 max_new_tokens=cfg.max_new_tokens, num_beams=1, eos_token_id=sorted(stop),
                                 pad_token_id=pad, use_cache=True, **kwargs)
            for row, i in enumerate(idx):
                answers[i] = tokenizer.decode(_until_stop(out[row, width:].tolist(), stop),
                                              skip_special_tokens=True).strip()
            if on_batch:
                on_batch(len(idx))
    finally:
        model.train(was_training)
        if cfg.do_sample:
            torch.random.set_rng_state(generator_state)
    return answers


def _until_stop(tokens: list[int], stop: set[int]) -> list[int]:
    for n, token in enumerate(tokens):
        if token in stop:
            return tokens[:n]
    return tokens


def normalize(text: str) -> str:
    """Lower case, punctuation and extra spaces removed (SQuAD-style answer normalisation)."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize(prediction) == normalize(reference))


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = normalize(prediction).split(), normalize(reference).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if not pred or not ref or not common:
        return float(pred == ref)
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)
