"""Answers per second: batched, left-padded generation against one-at-a-time generation.

Baseline (measured in the same run, same model, same prompts, same decoding): one question at a
time (batch size 1). Both use promptly's one `generate`, greedy, the tiny local model, and
prompts built like `promptly eval` builds them (question + document context from the sample
corpus). Every answer is generated to exactly --new-tokens tokens (eos disabled), so both sides do
the same amount of decoding. Target: >= 3x at batch size 16 on a 2-core CPU. The last line is
`batched_speedup=<ratio>`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from promptly.data.config import PromptConfig
from promptly.data.encoding import ExampleEncoder
from promptly.data.prompts import PromptBuilder
from promptly.model.config import SamplingConfig
from promptly.model.factory import ModelFactory
from promptly.model.generation import generate as generate_answers

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"


def build_prompts(encoder: ExampleEncoder, n: int, context_words: int) -> list[list[int]]:
    rows = [json.loads(line) for line in (SAMPLE / "qa.jsonl").read_text().splitlines() if line.strip()][:n]
    prompts = []
    for row in rows:
        words = (SAMPLE / "docs" / row["document_id"]).read_text().split()
        prompts.append(encoder.prompt_ids(row["question"], " ".join(words[:context_words]), reserve=64)[0])
    return prompts


def answers_per_second(model: torch.nn.Module, tokenizer: object, prompts: list[list[int]], batch_size: int,
                       new_tokens: int) -> tuple[float, list[str]]:
    cfg = SamplingConfig(batch_size=batch_size, max_new_tokens=new_tokens)
    generate_answers(model, tokenizer, prompts[:batch_size], cfg)  # warm-up
    started = time.perf_counter()
    answers = generate_answers(model, tokenizer, prompts, cfg)
    return len(prompts) / (time.perf_counter() - started), answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--context-words", type=int, default=120)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as cache:
        factory = ModelFactory(name_or_path="tiny", tiny={"corpus_dir": str(SAMPLE), "cache_dir": cache})
        tokenizer = factory.load_tokenizer()
        model = factory.build()
    model.generation_config.eos_token_id = None  # fixed-length answers: equal work on both sides
    encoder = ExampleEncoder(tokenizer, PromptBuilder(PromptConfig(), tokenizer), max_length=1024)
    prompts = build_prompts(encoder, args.examples, args.context_words)
    print(f"tiny model, {len(prompts)} prompts of {min(map(len, prompts))}-{max(map(len, prompts))} tokens, "
          f"{args.new_tokens} new tokens each, torch threads={torch.get_num_threads()}", flush=True)
    single, single_answers = answers_per_second(model, _NoEos(tokenizer), prompts, 1, args.new_tokens)
    print(f"one-at-a-time: {single:.2f} answers/s", flush=True)
    batched, batched_answers = answers_per_second(model, _NoEos(tokenizer), prompts, args.batch_size, args.new_tokens)
    agree = sum(a == b for a, b in zip(single_answers, batched_answers, strict=True)) / len(prompts)
    print(f"batched (batch size {args.batch_size}): {batched:.2f} answers/s; "
          f"identical greedy answers: {agree:.0%}", flush=True)
    print(f"batched_speedup={batched / single:.2f}")


class _NoEos:
    """The tokenizer with eos hidden from generation, so every answer runs to max_new_tokens."""

    def __init__(self, tokenizer: object) -> None:
        self._tok = tokenizer

    eos_token_id = None

    @property
    def pad_token_id(self) -> int:
        return int(self._tok.pad_token_id)  # type: ignore[attr-defined]

    def decode(self, *args: object, **kwargs: object) -> str:
        return str(self._tok.decode(*args, **kwargs))  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
