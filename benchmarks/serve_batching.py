"""Continuous batching on this machine: promptly's scheduler against transformers' own manager.

N RAG-sized prompts (the sample corpus's chunks, ~--prompt-tokens tokens each) are answered greedily
with --max-new-tokens tokens by the packaged SmolLM2-135M-Instruct (or --model), three ways:

- one at a time: promptly's `generate`, batch of one (the reference answers);
- promptly: `ContinuousBatcher` (promptly/serving/batching.py), all N submitted at once;
- transformers: `model.generate_batch` (transformers/generation/continuous_batching, paged KV cache).

Prints generated tokens/s of each, the speed-up over one at a time, and how many answers equal the
reference token for token. The last line is `promptly_tok_s=.. transformers_tok_s=.. sequential_tok_s=..`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir

from promptly.model.config import SamplingConfig
from promptly.model.generation import generate
from promptly.model.loading import load_model
from promptly.serving.batching import ContinuousBatcher, Job
from promptly.serving.config import resolved_copy
from promptly.serving.metrics import ServerMetrics
from promptly.serving.models import ModelSlot
from promptly.verbs.entry import config_dir

ROOT = Path(__file__).resolve().parents[1]


def prompts(tokenizer: Any, n: int, length: int) -> list[list[int]]:
    """N different prompts of about `length` tokens, cut from the sample documents."""
    text = " ".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "sample_data" / "docs").rglob("*.md")))
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    step = max(1, (len(ids) - length) // n)
    return [ids[i * step: i * step + length - 8 * (i % 4)] for i in range(n)]


def sequential(loaded: Any, ps: list[list[int]], cfg: SamplingConfig) -> tuple[list[list[int]], float]:
    out, started = [], time.perf_counter()
    for p in ps:
        tokens: list[int] = []

        def keep(_: int, token: int, tokens: list[int] = tokens) -> None:
            tokens.append(token)

        generate(loaded.model, loaded.tokenizer, [p], cfg, on_token=keep)
        out.append(tokens)
    return out, time.perf_counter() - started


def promptly_batcher(loaded: Any, ps: list[list[int]], cfg: SamplingConfig) -> tuple[list[list[int]], float]:
    metrics = ServerMetrics()
    batcher = ContinuousBatcher(len(ps), metrics)
    batcher.start()
    slot = ModelSlot(loaded, "bench")

    async def run() -> list[list[int]]:
        loop = asyncio.get_running_loop()
        jobs = [Job(slot=slot, prompt_ids=p, sampling=cfg, loop=loop) for p in ps]
        for job in jobs:
            batcher.submit(job)

        async def tokens(job: Job) -> list[int]:
            got = []
            while True:
                kind, value = await job.events.get()
                if kind == "token":
                    got.append(value)
                elif kind == "done":
                    return got
                else:
                    raise value

        return list(await asyncio.gather(*(tokens(j) for j in jobs)))

    started = time.perf_counter()
    try:
        out = asyncio.run(run())
    finally:
        batcher.stop()
    seconds = time.perf_counter() - started

    def total(name: str) -> float:
        return metrics.registry.get_sample_value(f"{name}_sum") or 0.0

    print(f"  (promptly: prefill {total('promptly_prefill_seconds'):.1f} s, decode steps "
          f"{total('promptly_decode_step_seconds'):.1f} s, mean {mean_rows(metrics):.2f} rows/step)", flush=True)
    return out, seconds


def mean_rows(metrics: ServerMetrics) -> float:
    count = metrics.registry.get_sample_value("promptly_batch_size_count") or 1.0
    return (metrics.registry.get_sample_value("promptly_batch_size_sum") or 0.0) / count


def transformers_manager(loaded: Any, ps: list[list[int]], cfg: SamplingConfig) -> tuple[list[list[int]], float]:
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    model = loaded.model
    stop = loaded.tokenizer.eos_token_id
    gen = GenerationConfig(max_new_tokens=cfg.max_new_tokens, do_sample=False, eos_token_id=stop,
                           pad_token_id=loaded.tokenizer.pad_token_id or stop,
                           repetition_penalty=cfg.repetition_penalty if cfg.repetition_penalty != 1.0 else None)
    started = time.perf_counter()
    # a bounded paged cache: sized from free memory by default, which on a shared CPU host ends in the OOM killer
    tokens = len(ps) * (max(map(len, ps)) + cfg.max_new_tokens)
    batching = ContinuousBatchingConfig(page_size=64, num_blocks=2 * (tokens // 64 + len(ps)),
                                        max_batch_tokens=2048, max_requests_per_batch=len(ps))
    results = model.generate_batch(inputs=ps, generation_config=gen, continuous_batching_config=batching,
                                   progress_bar=False)
    seconds = time.perf_counter() - started
    ordered = sorted(results.values(), key=lambda r: int(str(r.request_id).split("_")[-1]))
    return [[t for t in r.generated_tokens if t != stop] for r in ordered], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2_135m_instruct")
    parser.add_argument("--state", type=Path, default=ROOT / ".promptly" / "bench" / "serve")
    parser.add_argument("-n", type=int, default=8, help="prompts answered together")
    parser.add_argument("--prompt-tokens", type=int, default=460)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repetition-penalty", type=float, default=1.0)
    parser.add_argument("--skip-transformers", action="store_true")
    parser.add_argument("--dtype", default="auto", help="inference_dtype: auto (bf16 where native), float32")
    args = parser.parse_args()
    overrides = [f"paths.root_dir={args.state}", f"paths.output_dir={args.state}",
                 f"paths.data_dir={ROOT / 'sample_data'}", f"model={args.model}"]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = resolved_copy(compose(config_name="serve", overrides=overrides))
    cfg.inference_dtype = args.dtype  # read by load_model (serve's schema has no such key: always auto there)
    loaded = load_model(cfg)
    loaded.model.eval()
    sampling = SamplingConfig(batch_size=1, max_new_tokens=args.max_new_tokens,
                              repetition_penalty=args.repetition_penalty)
    ps = prompts(loaded.tokenizer, args.n, args.prompt_tokens)
    print(f"{args.model} ({next(loaded.model.parameters()).dtype}), {args.n} prompts of "
          f"{min(map(len, ps))}-{max(map(len, ps))} tokens, {args.max_new_tokens} new tokens, "
          f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}", flush=True)
    sequential(loaded, ps[:1], replace_tokens(sampling, 2))  # warm-up
    reference, seconds = sequential(loaded, ps, sampling)
    figures = {"sequential": sum(map(len, reference)) / seconds}
    print(f"  one at a time      {figures['sequential']:7.1f} tok/s  ({seconds:.1f} s)", flush=True)
    runs = [("promptly", promptly_batcher)]
    if not args.skip_transformers:
        runs.append(("transformers", transformers_manager))
    for name, fn in runs:
        try:
            answers, seconds = fn(loaded, ps, sampling)
        except Exception as err:  # report what fails rather than stop the comparison
            print(f"  {name:<18} failed: {type(err).__name__}: {str(err)[:300]}", flush=True)
            figures[name] = float("nan")
            continue
        figures[name] = sum(map(len, answers)) / seconds
        same = sum(a == r for a, r in zip(answers, reference, strict=True))
        print(f"  {name:<18} {figures[name]:7.1f} tok/s  ({seconds:.1f} s, {figures[name] / figures['sequential']:.2f}x"
              f" one at a time, {same}/{len(ps)} answers equal token for token, load "
              f"{os.getloadavg()[0]:.1f})", flush=True)
    hf = figures.get("transformers", float("nan"))
    print(f"promptly_tok_s={figures['promptly']:.1f} transformers_tok_s={hf:.1f} "
          f"sequential_tok_s={figures['sequential']:.1f}")


def replace_tokens(sampling: SamplingConfig, n: int) -> SamplingConfig:
    return SamplingConfig(batch_size=1, max_new_tokens=n, repetition_penalty=sampling.repetition_penalty)


if __name__ == "__main__":
    main()
