"""promptly's training step on one GPU: a 0.5B-class Qwen2-style model, random weights, bf16.

Needs only the repository and torch/transformers/lightning (no internet, no downloads): the model is
built from a config (Qwen2.5-0.5B's shape), and the data are the sample corpus's QA examples tokenized
with the tiny local tokenizer (token ids are valid for any larger vocabulary), or, if the sample
corpus is missing, a small synthetic set with the same shape (prompts of 300-1000 tokens, answers of
20-40). Batches are packed rows (data.batching=packed): several examples per row, positions restarting,
no attention across examples.

It runs --steps optimizer steps through Lightning + RagLitModule (the code `promptly train` runs) and
prints, over the steps after --warmup: supervised (answer) tokens/s, all tokens/s, peak memory, and
MFU = useful model FLOPs / (time x --peak-tflops). Useful FLOPs count what the step computes: 6 x
non-embedding parameters per token, the LM head only at supervised positions (promptly's loss skips
it elsewhere), and causal attention within each example (6 x layers x hidden x length^2 per example).

    python benchmarks/gpu_train_throughput.py                      # H100 bf16 dense peak: 989 TFLOPS
    python benchmarks/gpu_train_throughput.py --attn flash_attention_2 --rows 16 --row-length 4096
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"

QWEN2_0_5B = {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
              "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768,
              "rope_theta": 1_000_000.0, "tie_word_embeddings": True, "rms_norm_eps": 1e-6}


CPU_SMOKE = {**QWEN2_0_5B, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 32000}


class RandomQwen2:
    """The factory interface RagLitModule builds from (build, adapter_only, name_or_path), with a
    Qwen2 model from config and random weights instead of a Hub checkpoint."""

    name_or_path = "qwen2-0.5b-random"
    adapter_only = False
    is_tiny = False

    def __init__(self, attn: str, seed: int, shape: dict[str, Any]) -> None:
        self.attn_implementation, self.seed, self.shape = attn, seed, shape

    def build(self) -> Any:
        from transformers import Qwen2Config, Qwen2ForCausalLM

        config = Qwen2Config(**self.shape, attn_implementation=self.attn_implementation, use_cache=False)
        torch.manual_seed(self.seed)
        model = Qwen2ForCausalLM(config)
        model.train()
        return model


def sample_examples(max_length: int) -> list[tuple[list[int], int]]:
    """The sample corpus's QA pairs, prompt = question + the answer's document (cut to max_length)."""
    from promptly.data.config import PromptConfig
    from promptly.data.encoding import ExampleEncoder
    from promptly.data.prompts import PromptBuilder
    from promptly.model.config import TinyConfig
    from promptly.model.tiny import load_tiny_tokenizer

    tokenizer = load_tiny_tokenizer(TinyConfig(corpus_dir=str(SAMPLE), cache_dir=tempfile.mkdtemp()))
    encoder = ExampleEncoder(tokenizer, PromptBuilder(PromptConfig(), tokenizer), max_length)
    out = []
    for line in (SAMPLE / "qa.jsonl").read_text().splitlines():
        row = json.loads(line)
        doc = (SAMPLE / "docs" / row["document_id"]).read_text(errors="replace")
        context = doc[: 600 + zlib.crc32(row["question"].encode()) % 3000]  # varied, reproducible lengths
        enc = encoder.encode_qa(row["question"], context, row["answer"])
        if enc is not None:
            out.append((enc.input_ids, enc.prompt_len))
    return out


def synthetic_examples(n: int, seed: int) -> list[tuple[list[int], int]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        prompt, answer = int(rng.integers(300, 1000)), int(rng.integers(20, 40))
        out.append((rng.integers(10, 32000, prompt + answer).tolist(), prompt))
    return out


def useful_flops(batch: dict[str, torch.Tensor], non_embedding: int, hidden: int, vocab: int, layers: int) -> float:
    """Forward + backward FLOPs of one packed batch, as promptly computes it (see the docstring)."""
    lengths = batch["seq_lengths"].tolist()
    attention = 6 * layers * hidden * sum(n * n for n in lengths)  # causal: half of 12*L*H*n^2
    return 6.0 * non_embedding * sum(lengths) + 6.0 * hidden * vocab * int(batch["n_supervised"]) + attention


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rows", type=int, default=8, help="packed rows per batch")
    parser.add_argument("--row-length", type=int, default=4096, help="tokens per packed row")
    parser.add_argument("--batching", default="packed", choices=["packed", "grouped"],
                        help="grouped: length-grouped padded batches of about rows x row-length tokens")
    parser.add_argument("--attn", default="sdpa", help="sdpa, flash_attention_2, flex_attention, eager")
    parser.add_argument("--precision", default="bf16-mixed", help="Lightning precision: bf16-mixed or bf16-true")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="the GPU's dense bf16 peak")
    parser.add_argument("--synthetic", action="store_true", help="skip the sample corpus")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="functional check without a GPU: 2-layer model, 4 CPU steps (numbers meaningless)")
    args = parser.parse_args()
    shape, accelerator = QWEN2_0_5B, "gpu"
    if args.cpu_smoke:
        shape, accelerator = CPU_SMOKE, "cpu"
        args.steps, args.warmup, args.rows, args.row_length, args.precision = 4, 1, 2, 512, "32-true"
    elif not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU visible: this benchmark is for a GPU machine (or pass --cpu-smoke)")
    cuda = accelerator == "gpu"

    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from promptly.data.batching import EpochBatchSampler, ResumableDataLoader, RowDataset
    from promptly.data.collate import Collator
    from promptly.data.config import Batching
    from promptly.data.token_cache import TokenFile, TokenFileWriter
    from promptly.model.callbacks import SupervisedThroughput
    from promptly.model.module import RagLitModule
    from promptly.model.schedulers import warmup_cosine

    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
    source = "synthetic"
    rows = []
    if not args.synthetic and (SAMPLE / "qa.jsonl").is_file():
        rows, source = sample_examples(min(args.row_length, 2048)), "sample corpus"
    if not rows:
        rows = synthetic_examples(512, args.seed)
    need = args.rows * args.row_length * (args.steps + 2)
    reps = max(1, -(-need // sum(len(ids) for ids, _ in rows)))
    work = Path(tempfile.mkdtemp())
    writer = TokenFileWriter(work / "data", "train")
    for _ in range(reps):
        for ids, prompt_len in rows:
            writer.add(ids, prompt_len)
    writer.close()
    file = TokenFile.open(work / "data", "train")
    packed = args.batching == "packed"
    per_batch = args.rows if packed else max(1, round(args.rows * args.row_length / float(file.lengths.mean())))
    sampler = EpochBatchSampler(file.lengths, Batching(args.batching), per_batch, args.row_length, True, args.seed)
    loader = ResumableDataLoader(RowDataset(file), sampler, Collator(0, packed=packed, pad_to_multiple_of=64),
                                 num_workers=2)

    factory = RandomQwen2(args.attn, args.seed, shape)
    hidden, layers, vocab = shape["hidden_size"], shape["num_hidden_layers"], shape["vocab_size"]
    stats: dict[str, float] = {"tokens": 0, "supervised": 0, "flops": 0.0, "start": 0.0, "steps": 0,
                               "non_embedding": 0}

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    class Measure(L.Callback):
        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, idx: int) -> None:
            stats["steps"] += 1
            if stats["steps"] == args.warmup:
                stats["non_embedding"] = sum(p.numel() for n, p in module.net.named_parameters() if "embed" not in n)
                sync()
                stats["start"] = time.perf_counter()
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
            elif stats["steps"] > args.warmup:
                stats["tokens"] += int(batch["n_tokens"])
                stats["supervised"] += int(batch["n_supervised"])
                stats["flops"] += useful_flops(batch, int(stats["non_embedding"]), hidden, vocab, layers)

    module = RagLitModule(factory, tokenizer=None, optimizer=lambda params: torch.optim.AdamW(
        params, lr=3e-4, weight_decay=0.01), scheduler=lambda optimizer, total_steps: warmup_cosine(
        optimizer, total_steps, 0.05), samples=0)
    trainer = L.Trainer(accelerator=accelerator, devices=1, precision=args.precision, max_steps=args.steps,
                        logger=CSVLogger(str(work)), enable_checkpointing=False, enable_progress_bar=False,
                        limit_val_batches=0, gradient_clip_val=1.0, use_distributed_sampler=False,
                        callbacks=[SupervisedThroughput(log_every_n_steps=10), Measure()])
    trainer.fit(module, train_dataloaders=loader)
    sync()
    seconds = time.perf_counter() - stats["start"]
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
    mfu = stats["flops"] / seconds / (args.peak_tflops * 1e12)
    device = torch.cuda.get_device_name() if cuda else "cpu (smoke check)"
    print(f"device={device} data={source} attn={args.attn} precision={args.precision} batching={args.batching} "
          f"rows={args.rows}x{args.row_length} steps={args.steps - args.warmup} timed")
    print(f"tokens_per_sec={stats['tokens'] / seconds:.0f} supervised_tokens_per_sec="
          f"{stats['supervised'] / seconds:.0f} peak_memory_gib={peak:.1f} mfu={mfu:.3f}")


if __name__ == "__main__":
    main()
