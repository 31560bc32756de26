"""Supervised tokens per second: promptly's training against transformers' Trainer and a raw loop.

What is measured, in one run, on this machine's CPU, for each model of --models:
- tiny: the tiny local model trained in full, fp32, 8 examples per optimizer step, max_length 1024;
- smollm2: the packaged SmolLM2-135M-Instruct (a 49k vocabulary, so the LM head and padding weigh far
  more) with LoRA r16 on the attention projections, bf16 autocast, 4 examples per step, max_length 512;
- the same initial weights and QA examples for every contender, AdamW at a constant learning rate,
  gradient clipping at 1.0;
- the examples: the sample corpus's train-split QA pairs (sample_data/qa.jsonl, split by document as
  `promptly ingest` splits them), each prompt holding the two chunks of the answer's document that
  share the most words with the question (a lexical stand-in for the store's hybrid search, so the
  benchmark needs no database), built and masked by promptly's ExampleEncoder (max_length 1024);
- supervised tokens: answer tokens, i.e. labels that are not -100 (prompt and padding excluded);
- throughput = supervised tokens / wall time over steps --warmup+1 .. --steps (data loading included).

The contenders:
- promptly: Lightning Trainer + RagLitModule + promptly's resumable loader and collator, batching
  as `data.batching=auto` resolves on this machine (length-grouped here), CSV logging with the
  SupervisedThroughput and LearningRateMonitor callbacks on, checkpointing and validation off;
- trainer: transformers.Trainer, random batches padded by DataCollatorForSeq2Seq (its usual padding
  collator), the model's own loss;
- trainer_grouped: the same Trainer as a user who cares about speed configures it, with its own length
  grouping (`train_sampling_strategy="group_by_length"`): the stronger baseline;
- raw_loop: a hand-written PyTorch loop over exactly the batches promptly makes, with promptly's loss.

Each contender runs --rounds times, interleaved (CPU contention from other processes hits all of
them alike); its best round counts. One torch thread by default: on a shared 2-core machine two
threads stall on each other whenever another process takes a core, which swings timings 5-fold.
Targets: vs_trainer >= 1.3, vs_raw_loop >= 0.95; beyond that, 2x the best-configured peer.
One line per model `<model>: vs_trainer=<r> vs_trainer_grouped=<r> vs_raw_loop=<r>`; the last line
repeats the tiny model's ratios as `vs_trainer=<r> vs_trainer_grouped=<r> vs_raw_loop=<r>`.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from promptly.data.batching import EpochBatchSampler, ResumableDataLoader, RowDataset, resolve_batching
from promptly.data.collate import IGNORE_INDEX, Collator
from promptly.data.config import Batching, PromptConfig
from promptly.data.encoding import ExampleEncoder
from promptly.data.prompts import PromptBuilder
from promptly.data.token_cache import TokenFile, TokenFileWriter
from promptly.ingest.qa import SplitConfig, split_for_document
from promptly.model.config import TinyConfig
from promptly.model.factory import ModelFactory
from promptly.model.loss import supervised_loss
from promptly.model.packaged import PackagedModelConfig

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
FULL = {"method": "full", "r": None, "alpha": None, "dropout": None, "target_modules": None}
WORD = re.compile(r"[a-z0-9]+")


def chunks_of(text: str, size: int = 900) -> list[str]:
    """Paragraphs merged up to ~size characters (about the ingest chunker's 200 MiniLM tokens)."""
    out, cur = [], ""
    for para in (p.strip() for p in text.split("\n\n")):
        if cur and len(cur) + len(para) > size:
            out.append(cur)
            cur = ""
        cur = f"{cur}\n\n{para}" if cur else para
    return [*out, cur] if cur else out


def examples(tokenizer: Any, max_length: int, k: int = 2) -> list[tuple[list[int], int]]:
    encoder = ExampleEncoder(tokenizer, PromptBuilder(PromptConfig(), tokenizer), max_length)
    out = []
    for line in (SAMPLE / "qa.jsonl").read_text().splitlines():
        row = json.loads(line)
        if split_for_document(row["document_id"], SplitConfig()) != "train":
            continue
        q = set(WORD.findall(row["question"].lower()))
        chunks = chunks_of((SAMPLE / "docs" / row["document_id"]).read_text(errors="replace"))
        best = sorted(chunks, key=lambda c: -len(q & set(WORD.findall(c.lower()))))[:k]
        enc = encoder.encode_qa(row["question"], "\n\n".join(best), row["answer"])
        if enc is not None:
            out.append((enc.input_ids, enc.prompt_len))
    return out


LORA = {"method": "lora", "r": 16, "alpha": 32, "dropout": 0.0, "target_modules": ["q_proj", "k_proj", "v_proj",
                                                                             "o_proj"]}
MODELS: dict[str, dict[str, Any]] = {
    "tiny": {"batch_size": 8, "max_length": 1024, "precision": "32", "lr": 1e-3},
    "smollm2": {"batch_size": 4, "max_length": 512, "precision": "bf16", "lr": 3e-4},
}
"""Per model: the settings a user would train it with on a CPU."""


def model_factory(name: str, cache: Path) -> ModelFactory:
    if name == "smollm2":
        return ModelFactory("HuggingFaceTB/SmolLM2-135M-Instruct", peft=LORA, dtype="float32",
                            packaged=PackagedModelConfig(cache_dir=str(ROOT / ".promptly" / "models")))
    return ModelFactory("tiny", peft=FULL, tiny=TinyConfig(corpus_dir=str(SAMPLE), cache_dir=str(cache)))


def autocast(args: argparse.Namespace) -> Any:
    """bf16 autocast on the CPU (as Lightning's bf16-mixed and Trainer's bf16=True do), or nothing."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16")


def token_file(rows: list[tuple[list[int], int]], directory: Path) -> TokenFile:
    writer = TokenFileWriter(directory, "train")
    for ids, prompt_len in rows:
        writer.add(ids, prompt_len)
    writer.close()
    return TokenFile.open(directory, "train")


class Meter:
    """Supervised tokens and wall time from the end of step `warmup` to the end of the last step."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.steps, self.tokens = warmup, 0, 0
        self.start = self.end = 0.0

    def step(self, supervised: int) -> None:
        self.steps += 1
        if self.steps == self.warmup:
            self.start = time.perf_counter()
        elif self.steps > self.warmup:
            self.tokens += supervised
            self.end = time.perf_counter()

    @property
    def rate(self) -> float:
        return self.tokens / (self.end - self.start) if self.end > self.start else 0.0


def run_promptly(factory: ModelFactory, tokenizer: Any, file: TokenFile, args: argparse.Namespace,
                 workdir: Path) -> float:
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.loggers import CSVLogger

    from promptly.model.callbacks import SupervisedThroughput
    from promptly.model.module import RagLitModule
    from promptly.model.schedulers import warmup_constant

    meter = Meter(args.warmup)

    class Measure(L.Callback):
        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, idx: int) -> None:
            meter.step(int(batch["n_supervised"]))

    batching = resolve_batching(Batching(args.batching), factory.attn_implementation)
    loader = ResumableDataLoader(RowDataset(file), EpochBatchSampler(file.lengths, batching, args.batch_size,
                                 args.max_length, True, args.seed), Collator(tokenizer.pad_token_id,
                                 packed=batching == Batching.packed))
    module = RagLitModule(factory, tokenizer, optimizer=_adamw(args), samples=0,
                          scheduler=lambda optimizer, total_steps: warmup_constant(optimizer, total_steps))
    precision = "bf16-mixed" if args.precision == "bf16" else "32-true"
    trainer = L.Trainer(accelerator="cpu", devices=1, precision=precision, max_steps=args.steps,
                        logger=CSVLogger(str(workdir), name="csv"), log_every_n_steps=10,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, gradient_clip_val=1.0, use_distributed_sampler=False,
                        callbacks=[SupervisedThroughput(), LearningRateMonitor(), Measure()])
    trainer.fit(module, train_dataloaders=loader)
    return meter.rate


def run_raw(factory: ModelFactory, tokenizer: Any, file: TokenFile, args: argparse.Namespace) -> float:
    torch.manual_seed(args.seed)
    model = factory.build()
    opt = _adamw(args)(params=[p for p in model.parameters() if p.requires_grad])
    batching = resolve_batching(Batching(args.batching), factory.attn_implementation)
    sampler = EpochBatchSampler(file.lengths, batching, args.batch_size, args.max_length, True, args.seed)
    collate = Collator(tokenizer.pad_token_id, packed=batching == Batching.packed)
    meter, epoch = Meter(args.warmup), 0
    while meter.steps < args.steps:
        sampler.set_epoch(epoch)
        for rows in sampler:
            batch = collate([[file[i] for i in row] for row in rows])
            with autocast(args):
                loss_sum, n = supervised_loss(model, batch)
            (loss_sum / n).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            meter.step(int(batch["n_supervised"]))
            if meter.steps == args.steps:
                break
        epoch += 1
    return meter.rate


def run_hf_trainer(factory: ModelFactory, tokenizer: Any, file: TokenFile, args: argparse.Namespace,
                   workdir: Path, grouped: bool = False) -> float:
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments

    torch.manual_seed(args.seed)
    model = factory.build()
    rows = []
    for i in range(len(file)):
        ids, prompt_len = file[i]
        labels = ids.copy()
        labels[:prompt_len] = IGNORE_INDEX
        rows.append({"input_ids": ids.tolist(), "labels": labels.tolist()})
    meter = Meter(args.warmup)
    pending = {"tokens": 0}

    class Counting(Trainer):
        def training_step(self, model: Any, inputs: dict[str, Any], *a: Any, **kw: Any) -> Any:
            pending["tokens"] = int((inputs["labels"][:, 1:] != IGNORE_INDEX).sum())
            return super().training_step(model, inputs, *a, **kw)

    class Measure(TrainerCallback):
        def on_step_end(self, *a: Any, **kw: Any) -> None:
            meter.step(pending["tokens"])

    targs = TrainingArguments(output_dir=str(workdir), per_device_train_batch_size=args.batch_size,
                              max_steps=args.steps, learning_rate=args.lr, lr_scheduler_type="constant",
                              weight_decay=0.0, max_grad_norm=1.0, optim="adamw_torch", use_cpu=True,
                              report_to=[], save_strategy="no", logging_strategy="no", disable_tqdm=True,
                              dataloader_num_workers=0, dataloader_pin_memory=False, seed=args.seed,
                              bf16=args.precision == "bf16",
                              train_sampling_strategy="group_by_length" if grouped else "random")
    trainer = Counting(model=model, args=targs, train_dataset=rows, callbacks=[Measure()],
                       data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True,
                                                            label_pad_token_id=IGNORE_INDEX))
    trainer.train()
    return meter.rate


def _adamw(args: argparse.Namespace) -> Callable[..., torch.optim.Optimizer]:
    return lambda params: torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)


def padding_waste(file: TokenFile, batches: list[list[list[int]]]) -> float:
    real = sum(int(file.lengths[i]) for b in batches for r in b for i in r)
    padded = sum(max(sum(int(file.lengths[i]) for i in r) for r in b) * len(b) for b in batches)
    return 1 - real / padded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,smollm2", help="comma-separated: tiny, smollm2")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batching", default="auto", choices=[b.value for b in Batching])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (0: torch's default); 1 keeps a shared machine's noise down")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    ratios: dict[str, dict[str, float]] = {}
    for model in args.models.split(","):
        for key, value in MODELS[model].items():
            setattr(args, key, value)
        ratios[model] = measure(model, args)
        print(f"{model}: " + " ".join(f"{k}={v:.2f}" for k, v in ratios[model].items()), flush=True)
    first = ratios.get("tiny") or next(iter(ratios.values()))
    print(" ".join(f"{k}={v:.2f}" for k, v in first.items()))


def measure(model: str, args: argparse.Namespace) -> dict[str, float]:
    """The contenders' best supervised tokens/s on one model; returns promptly's ratios to each."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        factory = model_factory(model, work / "tiny")
        tokenizer = factory.load_tokenizer()
        file = token_file(examples(tokenizer, args.max_length), work / "data")
        lengths = file.lengths
        sup = int(sum(len_ - int(file.index[i, 2]) for i, len_ in enumerate(lengths)))
        batching = resolve_batching(Batching(args.batching), factory.attn_implementation)
        ours = EpochBatchSampler(lengths, batching, args.batch_size, args.max_length, True, args.seed).plan()
        rand = EpochBatchSampler(lengths, Batching.padded, args.batch_size, args.max_length, True, args.seed).plan()
        print(f"[{model}] {len(file)} examples, {int(lengths.sum())} tokens ({sup} supervised), lengths "
              f"{int(lengths.min())}-{int(lengths.max())} (median {int(np.median(lengths))}); batch size "
              f"{args.batch_size}; precision {args.precision}; {torch.get_num_threads()} torch threads; "
              f"promptly batching={batching.value}")
        print(f"[{model}] padding: promptly {padding_waste(file, ours):.1%} of batch tokens, random batches "
              f"{padding_waste(file, rand):.1%}")
        best: dict[str, float] = {"promptly": 0.0, "trainer": 0.0, "trainer_grouped": 0.0, "raw_loop": 0.0}
        for r in range(args.rounds):
            for name in best:
                if name == "promptly":
                    rate = run_promptly(factory, tokenizer, file, args, work / f"pl{r}")
                elif name == "raw_loop":
                    rate = run_raw(factory, tokenizer, file, args)
                else:
                    rate = run_hf_trainer(factory, tokenizer, file, args, work / f"hf{r}",
                                          grouped=name == "trainer_grouped")
                print(f"[{model}] round {r + 1}: {name:15s} {rate:8.1f} supervised tokens/s", flush=True)
                best[name] = max(best[name], rate)
        for name, rate in best.items():
            print(f"[{model}] best {name:15s} {rate:8.1f} supervised tokens/s")
        return {f"vs_{name}": best["promptly"] / best[name] for name in ("trainer", "trainer_grouped", "raw_loop")}


if __name__ == "__main__":
    main()
