"""Batching on one GPU: promptly's grouped (default) and packed steps against a padded baseline, 0.5B model.

Self-contained for a GPU machine without internet: it builds a Qwen2-0.5B-shaped model from its
config (random weights, bf16), makes a synthetic RAG-like dataset (long prompts, short answers:
prompt 250-900 tokens, answer 16-96), and times, in one run on the same examples:

- promptly grouped (its default with sdpa attention, `data.batching=auto`): length-grouped batches
  (promptly.data.batching.plan_batches) and promptly's loss (promptly.model.loss.supervised_loss: LM
  head only on supervised positions);
- promptly packed (`data.batching=packed`, the default only with varlen flash attention): rows of
  --max-length tokens, position_ids restarting per example so nothing attends across examples;
- baseline: the usual padded batches (length-unsorted, right padding, attention_mask) and the full
  forward (logits for every position), i.e. what transformers' Trainer + a padding collator does.

Tokens per second count supervised tokens (answer tokens: non-padding, non-masked). Model FLOPs
utilisation = 6 x parameters x non-padding tokens processed per second / --peak-tflops (attention
FLOPs excluded, so MFU is a lower bound). Peak memory is torch.cuda.max_memory_allocated.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from promptly.data.batching import pack_rows, plan_batches
from promptly.data.collate import Collator
from promptly.data.config import Batching
from promptly.model.loss import supervised_loss


def qwen2_05b(vocab_size: int) -> torch.nn.Module:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=vocab_size, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                         tie_word_embeddings=True, rope_theta=1_000_000.0)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return Qwen2ForCausalLM(config).to(dtype=torch.bfloat16, device="cuda")


def synthetic_examples(n: int, vocab: int, seed: int) -> list[tuple[np.ndarray, int]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        prompt, answer = int(rng.integers(250, 900)), int(rng.integers(16, 96))
        out.append((rng.integers(10, vocab, prompt + answer).astype(np.int64), prompt))
    return out


def packed_batches(examples: list[tuple[np.ndarray, int]], max_length: int, rows_per_batch: int) -> list[list]:
    lengths = np.array([len(ids) for ids, _ in examples])
    rows = pack_rows(list(range(len(examples))), lengths, max_length)
    rows = [[examples[i] for i in row] for row in rows]
    return [rows[i : i + rows_per_batch] for i in range(0, len(rows), rows_per_batch)]


def grouped_batches(examples: list[tuple[np.ndarray, int]], batch_size: int, max_length: int) -> list[list]:
    lengths = np.array([len(ids) for ids, _ in examples])
    plan = plan_batches(lengths, Batching.grouped, batch_size, max_length, shuffle=True, seed=0, epoch=0)
    return [[[examples[i] for i in row] for row in batch] for batch in plan]


def padded_batches(examples: list[tuple[np.ndarray, int]], batch_size: int) -> list[list]:
    return [[[ex] for ex in examples[i : i + batch_size]] for i in range(0, len(examples), batch_size)]


def baseline_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Full forward with logits everywhere, as a stock causal-LM step computes them."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    targets = batch["labels"][:, 1:]
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                                             targets.reshape(-1), ignore_index=-100, reduction="sum")
    return loss, (targets != -100).sum()


def run(name: str, model: torch.nn.Module, batches: list[list], collator: Collator, loss_fn, steps: int,
        warmup: int, n_params: int, peak_tflops: float) -> dict[str, float]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    torch.cuda.reset_peak_memory_stats()
    supervised = nonpad = 0
    started = 0.0
    for step in range(warmup + steps):
        raw = collator(batches[step % len(batches)])
        batch = {k: v.cuda(non_blocking=True) for k, v in raw.items()}
        if step == warmup:
            torch.cuda.synchronize()
            started = time.perf_counter()
            supervised = nonpad = 0
        loss_sum, n = loss_fn(model, batch)
        (loss_sum / n.clamp(min=1)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        supervised += int(raw["n_supervised"])
        nonpad += int(sum(len(ids) for row in batches[step % len(batches)] for ids, _ in row))
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    result = {"supervised_tok_s": supervised / seconds, "tok_s": nonpad / seconds,
              "mfu": 6 * n_params * nonpad / seconds / (peak_tflops * 1e12),
              "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30}
    print(f"[{name}] supervised tokens/s={result['supervised_tok_s']:,.0f} non-padding tokens/s="
          f"{result['tok_s']:,.0f} MFU={result['mfu']:.1%} peak memory={result['peak_mem_gib']:.1f} GiB",
          flush=True)
    del opt
    torch.cuda.empty_cache()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=8192, help="packed row length (tokens)")
    parser.add_argument("--rows", type=int, default=2, help="packed rows per batch")
    parser.add_argument("--examples", type=int, default=2400)
    parser.add_argument("--vocab", type=int, default=151_936)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the card")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    print(f"{torch.cuda.get_device_name()}; torch {torch.__version__}", flush=True)
    examples = synthetic_examples(args.examples, args.vocab, seed=0)
    packed = packed_batches(examples, args.max_length, args.rows)
    per_batch = sum(len(ids) for row in packed[0] for ids, _ in row)
    mean_len = float(np.mean([len(ids) for ids, _ in examples]))
    # The baseline sees about as many real tokens per step as promptly does.
    batch_size = max(1, round(per_batch / mean_len))
    padded = padded_batches(examples, batch_size)
    grouped = grouped_batches(examples, batch_size, args.max_length)
    model = qwen2_05b(args.vocab)
    model.gradient_checkpointing_enable()
    model.config.use_cache = False
    n_params = sum(p.numel() for p in model.parameters())
    print(f"Qwen2-0.5B-shaped model, {n_params / 1e6:.0f}M parameters, bf16, sdpa, gradient checkpointing; "
          f"{len(examples)} examples; packed rows of {args.max_length} x {args.rows}; "
          f"padded batches of {len(padded[0])}", flush=True)
    ours = run("promptly grouped (default, sdpa)", model, grouped, Collator(0, packed=False), supervised_loss,
               args.steps, args.warmup, n_params, args.peak_tflops)
    run("promptly packed", model, packed, Collator(0, packed=True), supervised_loss, args.steps,
        args.warmup, n_params, args.peak_tflops)
    base = run("padded baseline", model, padded, Collator(0, packed=False), baseline_loss, args.steps,
               args.warmup, n_params, args.peak_tflops)
    print(f"supervised_tokens_per_s={ours['supervised_tok_s']:.0f} peak_mem_gib={ours['peak_mem_gib']:.1f} "
          f"mfu={ours['mfu']:.3f} vs_padded={ours['supervised_tok_s'] / base['supervised_tok_s']:.2f}")


if __name__ == "__main__":
    main()
