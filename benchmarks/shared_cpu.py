"""Throughput beside one CPU-burning process: does promptly's thread choice keep it from collapsing?

For the packaged SmolLM2-135M-Instruct, on this machine's CPU:
- generation: greedy answer (up to --new-tokens) to one ~430-token RAG prompt, promptly's `generate`,
  weights in the inference dtype promptly picks (bf16 where native);
- training: promptly's Lightning step (benchmarks/train_throughput.py's `promptly` contender: LoRA,
  precision as `promptly train` resolves it), supervised tokens/s over a few steps.

Each runs under four conditions, interleaved round by round: quiet or beside one `while True: pass`
process this script starts and stops, with torch's default thread count (one per CPU) or with
promptly's choice (`PROMPTLY_NUM_THREADS=auto`: promptly.utils.hardware.resolve_threads, measured
at the start of each run). The load average is printed before and after: on a machine other jobs
share, "quiet" means "without our burner" only.
Quiet runs are also timed on the CPUs one burner leaves free (`spare`: one thread fewer than CPUs): no thread
choice can beat that beside the burner, so `floor` (quiet promptly against quiet spare) is the lowest slowdown
this machine allows. Last lines: `<task>: loaded_vs_quiet default=<r> promptly=<r> floor=<r>` (median seconds
or tok/s ratios; goal: promptly <= 1.3).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_throughput as tt

from promptly.model.config import SamplingConfig
from promptly.model.generation import generate
from promptly.model.loading import inference_dtype
from promptly.utils.hardware import resolve_threads

DEFAULT_THREADS = os.cpu_count() or 1


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def start_burner() -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(1.0)  # let it take its core before the thread count is measured
    return proc


def set_threads(mode: str) -> int:
    """default: torch's own (one per CPU); spare: the CPUs one burner leaves free (the best any choice can use
    beside it, timed without it); promptly: `resolve_threads("auto")`."""
    if mode == "spare":
        n = max(1, DEFAULT_THREADS - 1)
    else:
        n = DEFAULT_THREADS if mode == "default" else resolve_threads("auto").threads
    torch.set_num_threads(n)
    return n


def time_generation(model: Any, tokenizer: Any, prompt: list[int], new_tokens: int) -> float:
    cfg = SamplingConfig(batch_size=1, max_new_tokens=new_tokens)
    start = time.perf_counter()
    answer = generate(model, tokenizer, [prompt], cfg)[0]
    seconds = time.perf_counter() - start
    print(f"  ({len(tokenizer(answer, add_special_tokens=False).input_ids)} tokens generated)")
    return seconds


def slowdown(med: dict[tuple[str, str], float], task: str, slow: tuple[str, str], fast: tuple[str, str]) -> float:
    """How many times slower `slow` ran than `fast`: generation is timed in seconds (higher is worse),
    training in tok/s (lower is worse)."""
    return med[slow] / med[fast] if task == "generate" else med[fast] / med[slow]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--tasks", default="generate,train")
    parser.add_argument("--train-modes", default="default,promptly,spare",
                        help="thread modes timed for training (default threads beside the burner can take hours)")
    args = parser.parse_args()
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    print(f"load average before: {_load()}; {DEFAULT_THREADS} CPUs", flush=True)
    targs = argparse.Namespace(precision_setting="auto", batching="auto", seed=0, warmup=1, steps=args.train_steps,
                               profile=False, optimizer_text="?", **tt.MODELS["smollm2"])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        factory = tt.model_factory("smollm2", work / "tiny", targs)
        tokenizer = factory.load_tokenizer()
        rows = tt.examples(tokenizer, targs.max_length)
        prompt = min((ids[:prompt_len] for ids, prompt_len in rows), key=lambda p: abs(len(p) - 431))
        file = tt.token_file(rows, work / "data")
        gen_model = None
        if "generate" in args.tasks:
            gen_model = factory.build(with_peft=False).to(inference_dtype("auto")).eval()
            gen_model.config.use_cache = True
        results: dict[tuple[str, str, str], list[float]] = {}
        for r in range(args.rounds):
            for load in ("quiet", "burner"):
                burner = start_burner() if load == "burner" else None
                try:
                    for mode in ("default", "promptly") if load == "burner" else ("default", "promptly", "spare"):
                        threads = set_threads(mode)
                        if gen_model is not None:
                            s = time_generation(gen_model, tokenizer, list(prompt), args.new_tokens)
                            results.setdefault(("generate", load, mode), []).append(s)
                            print(f"round {r + 1} generate {load:6s} {mode:8s} threads={threads}: {s:6.2f} s "
                                  f"(prompt {len(prompt)} tokens); load {_load()}", flush=True)
                        if "train" in args.tasks and mode in args.train_modes.split(","):
                            rate = tt.run_promptly(factory, tokenizer, file, targs, work / f"pl{r}{load}{mode}")
                            results.setdefault(("train", load, mode), []).append(rate)
                            print(f"round {r + 1} train    {load:6s} {mode:8s} threads={threads}: {rate:6.1f} "
                                  f"supervised tok/s; load {_load()}", flush=True)
                finally:
                    if burner is not None:
                        burner.kill()
                        burner.wait()
    print(f"load average after: {_load()}")
    for task in ("generate", "train"):
        med = {k[1:]: statistics.median(v) for k, v in results.items() if k[0] == task}
        if not med:
            continue
        ratio = {mode: slowdown(med, task, ("burner", mode), ("quiet", mode))
                 for mode in ("default", "promptly") if ("quiet", mode) in med and ("burner", mode) in med}
        if ("quiet", "spare") in med and ("quiet", "promptly") in med:
            # the floor: the quiet promptly run against the same work on only the CPUs a burner leaves free
            ratio["floor"] = slowdown(med, task, ("quiet", "spare"), ("quiet", "promptly"))
        print(f"{task}: loaded_vs_quiet " + " ".join(f"{m}={r:.2f}" for m, r in ratio.items()))


if __name__ == "__main__":
    main()
