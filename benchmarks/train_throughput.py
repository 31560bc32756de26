"""Supervised tokens per second: promptly's training against transformers' Trainer and a raw loop.

What is measured, in one run, on this machine's CPU, for each model of --models:
- tiny: the tiny local model trained in full, 8 examples per optimizer step, max_length 1024;
- smollm2: the packaged SmolLM2-135M-Instruct (a 49k vocabulary, so the LM head and padding weigh far
  more) with LoRA r16 on the attention projections, 4 examples per step, max_length 512;
- precision and base-weight dtype as `promptly train` resolves them on this machine (--precision auto:
  promptly.utils.hardware.choose_precision; on a CPU with AMX/AVX512-BF16: tiny fp32, SmolLM2 bf16 autocast
  over bf16 frozen weights), the same for every contender: one model factory builds all their models;
- the same initial weights and QA examples for every contender, the same AdamW (fused or foreach as
  promptly picks it, handed to the Trainer too) at a constant learning rate, gradient clipping at 1.0;
- the same torch thread count for every contender: promptly's choice for this machine (--threads auto);
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
- raw_loop: a hand-written PyTorch loop over exactly the batches promptly makes, with promptly's loss;
- raw_loop_compiled (with --compile): the same loop with every decoder layer torch.compile'd in place
  (regional compilation, as `model.compile` does in promptly). Each of its rounds starts from a reset
  dynamo cache, so every round pays tracing; round 1 also starts from an empty inductor cache (a fresh
  TORCHINDUCTOR_CACHE_DIR: a first run on a machine), later rounds reuse the on-disk kernels (a second
  run). Its first step's time, the graphs compiled at each step (recompiles on new sequence lengths), and
  the break-even against raw_loop (steps before the compile time is paid back) are printed.

Each contender runs --rounds times, interleaved in an order that rotates every round (contention from
other processes, rising or falling, hits all of them alike); the median and the best round are printed,
and the ratios come from the medians (a lucky round cannot make them). The load average is printed before
and after each model: figures from a loaded machine say so. Targets: vs_trainer_grouped >= 1.3 (tiny) and
>= 2.0 (SmolLM2), vs_raw_loop >= 0.95. The last lines are one per model: `<model>: vs_trainer=<r>
vs_trainer_grouped=<r> vs_raw_loop=<r>` (median ratios).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
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
from promptly.model.module import fast_adam_kwargs
from promptly.model.packaged import PackagedModelConfig
from promptly.utils.hardware import choose_precision, detect_hardware, resolve_threads

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
    "tiny": {"batch_size": 8, "max_length": 1024, "lr": 1e-3},
    "smollm2": {"batch_size": 4, "max_length": 512, "lr": 3e-4},
}
"""Per model: the settings a user would train it with on a CPU."""


def model_factory(name: str, cache: Path, args: argparse.Namespace) -> ModelFactory:
    """The model as `promptly train` builds it; sets args.precision (Lightning's string) for every contender."""
    if name == "smollm2":
        factory = ModelFactory("HuggingFaceTB/SmolLM2-135M-Instruct", peft=LORA, dtype="auto",
                               packaged=PackagedModelConfig(cache_dir=str(ROOT / ".promptly" / "models")))
    else:
        factory = ModelFactory("tiny", peft=FULL, tiny=TinyConfig(corpus_dir=str(SAMPLE), cache_dir=str(cache)),
                               dtype="auto")
    requested = {"auto": "auto", "32": "32-true", "bf16": "bf16-mixed"}[args.precision_setting]
    choice = choose_precision(requested, "auto", factory.adapter_only, detect_hardware("cpu"))
    factory.dtype_name = choice.weight_dtype
    args.precision, args.weight_dtype = choice.precision, choice.weight_dtype
    return factory


def autocast(args: argparse.Namespace) -> Any:
    """bf16 autocast on the CPU (as Lightning's bf16-mixed and Trainer's bf16=True do), or nothing."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed")


def token_file(rows: list[tuple[list[int], int]], directory: Path) -> TokenFile:
    writer = TokenFileWriter(directory, "train")
    for ids, prompt_len in rows:
        writer.add(ids, prompt_len)
    writer.close()
    return TokenFile.open(directory, "train")


class Meter:
    """Supervised tokens and wall time from the end of step `warmup` to the end of the last step; with
    `profile` (a label), torch.profiler records the same steps and prints where their time went."""

    def __init__(self, warmup: int, profile: str | None = None, last: int = 0) -> None:
        self.warmup, self.steps, self.tokens = warmup, 0, 0
        self.start = self.end = 0.0
        self.profile, self.last = profile, last
        self.begun = self.previous = time.perf_counter()
        self.durations: list[float] = []
        """Wall seconds of each step (the first one from the meter's creation, i.e. the model's build)."""
        self._profiler: Any = None

    def step(self, supervised: int) -> None:
        self.steps += 1
        now = time.perf_counter()
        self.durations.append(now - self.previous)
        self.previous = now
        if self.steps == self.warmup:
            self.start = time.perf_counter()
            if self.profile:
                self._profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
                self._profiler.__enter__()
        elif self.steps > self.warmup:
            self.tokens += supervised
            self.end = time.perf_counter()
            if self._profiler is not None and self.steps == self.last:
                self._profiler.__exit__(None, None, None)
                self._report()

    def _report(self) -> None:
        steps = self.last - self.warmup
        events = self._profiler.key_averages()
        print(f"--- profile: {self.profile}, {steps} steps, {(self.end - self.start) / steps * 1000:.0f} ms/step wall")
        print(events.table(sort_by="self_cpu_time_total", row_limit=14, max_name_column_width=60))

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

    meter = Meter(args.warmup, "promptly" if args.profile else None, args.steps)

    class Measure(L.Callback):
        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, idx: int) -> None:
            meter.step(int(batch["n_supervised"]))

    batching = resolve_batching(Batching(args.batching), factory.attn_implementation)
    loader = ResumableDataLoader(RowDataset(file), EpochBatchSampler(file.lengths, batching, args.batch_size,
                                 args.max_length, True, args.seed), Collator(tokenizer.pad_token_id,
                                 packed=batching == Batching.packed))
    module = RagLitModule(factory, tokenizer, optimizer=_adamw(args), samples=0,
                          scheduler=lambda optimizer, total_steps: warmup_constant(optimizer, total_steps))
    trainer = L.Trainer(accelerator="cpu", devices=1, precision=args.precision, max_steps=args.steps,
                        logger=CSVLogger(str(workdir), name="csv"), log_every_n_steps=10,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, gradient_clip_val=1.0, use_distributed_sampler=False,
                        callbacks=[SupervisedThroughput(), LearningRateMonitor(), Measure()])
    trainer.fit(module, train_dataloaders=loader)
    return meter.rate


def run_raw(factory: ModelFactory, tokenizer: Any, file: TokenFile, args: argparse.Namespace,
            compiled: bool = False, log: list[dict[str, Any]] | None = None) -> float:
    """The raw loop's supervised tokens/s; with `compiled`, its decoder layers are torch.compile'd and
    each step's wall time and newly compiled graphs are appended to `log`."""
    import torch._dynamo

    torch.manual_seed(args.seed)
    if compiled:
        torch._dynamo.reset()  # every compiled round traces again (the on-disk inductor cache stays)
    model = factory.build()
    if compiled:  # regional: each decoder layer compiled in place (the loss calls the decoder directly)
        for layer in [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]:
            layer.compile(dynamic=args.compile_dynamic)
    graphs = torch._dynamo.utils.counters["stats"]
    opt = _adamw(args)(params=[p for p in model.parameters() if p.requires_grad])
    args.optimizer_text = _optimizer_text(opt)
    batching = resolve_batching(Batching(args.batching), factory.attn_implementation)
    sampler = EpochBatchSampler(file.lengths, batching, args.batch_size, args.max_length, True, args.seed)
    collate = Collator(tokenizer.pad_token_id, packed=batching == Batching.packed)
    meter, epoch = Meter(args.warmup, "raw_loop" if args.profile else None, args.steps), 0
    seen = graphs["unique_graphs"]
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
            if log is not None:
                log.append({"seconds": meter.durations[-1], "graphs": graphs["unique_graphs"] - seen,
                            "shape": tuple(batch["input_ids"].shape)})
                seen = graphs["unique_graphs"]
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
    meter = Meter(args.warmup, ("trainer_grouped" if grouped else "trainer") if args.profile else None, args.steps)
    pending = {"tokens": 0}

    class Counting(Trainer):
        def training_step(self, model: Any, inputs: dict[str, Any], *a: Any, **kw: Any) -> Any:
            pending["tokens"] = int((inputs["labels"][:, 1:] != IGNORE_INDEX).sum())
            return super().training_step(model, inputs, *a, **kw)

        def create_optimizer(self, *a: Any, **kw: Any) -> Any:
            if self.optimizer is None:  # the same AdamW as the other contenders (HF's adamw_torch loops per tensor)
                net: Any = self.model
                self.optimizer = _adamw(args)(params=[p for p in net.parameters() if p.requires_grad])
            return self.optimizer

    class Measure(TrainerCallback):
        def on_step_end(self, *a: Any, **kw: Any) -> None:
            meter.step(pending["tokens"])

    targs = TrainingArguments(output_dir=str(workdir), per_device_train_batch_size=args.batch_size,
                              max_steps=args.steps, learning_rate=args.lr, lr_scheduler_type="constant",
                              weight_decay=0.0, max_grad_norm=1.0, optim="adamw_torch", use_cpu=True,
                              report_to=[], save_strategy="no", logging_strategy="no", disable_tqdm=True,
                              dataloader_num_workers=0, dataloader_pin_memory=False, seed=args.seed,
                              bf16=args.precision == "bf16-mixed",
                              train_sampling_strategy="group_by_length" if grouped else "random")
    trainer = Counting(model=model, args=targs, train_dataset=rows, callbacks=[Measure()],
                       data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True,
                                                            label_pad_token_id=IGNORE_INDEX))
    trainer.train()
    return meter.rate


def _adamw(args: argparse.Namespace) -> Callable[..., torch.optim.Optimizer]:
    """AdamW as RagLitModule builds it: fused where torch has a kernel, foreach under mixed precision with
    clipping (Lightning will not clip a fused optimizer's gradients there)."""
    def make(params: Any) -> torch.optim.Optimizer:
        plist = list(params)
        flat = [p for g in plist for p in g["params"]] if plist and isinstance(plist[0], dict) else plist
        fast = fast_adam_kwargs(_Partial(torch.optim.AdamW), flat, fused_ok=args.precision == "32-true")
        return torch.optim.AdamW(plist, lr=args.lr, weight_decay=0.0, **fast)
    return make


class _Partial:
    """What fast_adam_kwargs reads of a Hydra partial."""

    def __init__(self, func: Any) -> None:
        self.func, self.keywords = func, dict[str, Any]()


def _optimizer_text(opt: torch.optim.Optimizer) -> str:
    d = opt.defaults
    return f"{type(opt).__name__}(fused={d.get('fused')}, foreach={d.get('foreach')})"


def padding_waste(file: TokenFile, batches: list[list[list[int]]]) -> float:
    real = sum(int(file.lengths[i]) for b in batches for r in b for i in r)
    padded = sum(max(sum(int(file.lengths[i]) for i in r) for r in b) * len(b) for b in batches)
    return 1 - real / padded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,smollm2", help="comma-separated: tiny, smollm2")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batching", default="auto", choices=[b.value for b in Batching])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", dest="precision_setting", default="auto", choices=["auto", "32", "bf16"],
                        help="auto: as promptly train resolves it on this machine (same for every contender)")
    parser.add_argument("--contenders", default="promptly,trainer,trainer_grouped,raw_loop")
    parser.add_argument("--compile", action="store_true",
                        help="add the raw_loop_compiled contender (decoder layers torch.compile'd): first-step "
                             "time, recompiles and the break-even against raw_loop are printed")
    parser.add_argument("--compile-dynamic", default="auto", choices=["auto", "true", "false"],
                        help="torch.compile's dynamic: auto (None: static first, dynamic after a shape "
                             "changes), true (symbolic shapes from the start), false (one graph per shape)")
    parser.add_argument("--compile-cache", default="fresh",
                        help="fresh: an empty inductor cache (round 1 is a first run's compile time); default: "
                             "torch's own; or a directory (run twice with it: the second run's round 1 is a "
                             "later run's compile time, on-disk cache warm)")
    parser.add_argument("--profile", action="store_true",
                        help="torch.profiler over the timed steps of each contender: top ops by self CPU time")
    parser.add_argument("--threads", default="auto",
                        help="torch threads for every contender: auto (promptly's choice), or a number")
    args = parser.parse_args()
    args.optimizer_text = "?"
    args.compile_dynamic = {"auto": None, "true": True, "false": False}[args.compile_dynamic]
    if args.compile:
        if "raw_loop_compiled" not in args.contenders:
            args.contenders += ",raw_loop_compiled"
        if args.compile_cache != "default":
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = (tempfile.mkdtemp(prefix="inductor-")
                                                     if args.compile_cache == "fresh" else args.compile_cache)
    threads = resolve_threads(args.threads)
    torch.set_num_threads(threads.threads)
    print(f"torch threads: {threads.threads} ({threads.reason}); load average before "
          f"{_load()}", flush=True)
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
    print(f"load average after: {_load()}")
    for model, r in ratios.items():
        print(f"{model}: " + " ".join(f"{k}={v:.2f}" for k, v in r.items()), flush=True)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def measure(model: str, args: argparse.Namespace) -> dict[str, float]:
    """The contenders' best supervised tokens/s on one model; returns promptly's ratios to each."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        factory = model_factory(model, work / "tiny", args)
        tokenizer = factory.load_tokenizer()
        file = token_file(examples(tokenizer, args.max_length), work / "data")
        lengths = file.lengths
        sup = int(sum(len_ - int(file.index[i, 2]) for i, len_ in enumerate(lengths)))
        batching = resolve_batching(Batching(args.batching), factory.attn_implementation)
        ours = EpochBatchSampler(lengths, batching, args.batch_size, args.max_length, True, args.seed).plan()
        rand = EpochBatchSampler(lengths, Batching.padded, args.batch_size, args.max_length, True, args.seed).plan()
        print(f"[{model}] {len(file)} examples, {int(lengths.sum())} tokens ({sup} supervised), lengths "
              f"{int(lengths.min())}-{int(lengths.max())} (median {int(np.median(lengths))}); batch size "
              f"{args.batch_size}; precision {args.precision}, base weights {args.weight_dtype}; "
              f"{torch.get_num_threads()} torch threads; "
              f"promptly batching={batching.value}")
        print(f"[{model}] padding: promptly {padding_waste(file, ours):.1%} of batch tokens, random batches "
              f"{padding_waste(file, rand):.1%}")
        print(f"[{model}] load average before: {_load()}", flush=True)
        rates: dict[str, list[float]] = {name: [] for name in args.contenders.split(",")}
        logs: dict[str, list[list[dict[str, Any]]]] = {"raw_loop": [], "raw_loop_compiled": []}
        names = list(rates)
        for r in range(args.rounds):
            # the order rotates round by round: load that rises or falls during a run favours no contender
            for name in names[r % len(names):] + names[:r % len(names)]:
                if name == "promptly":
                    rate = run_promptly(factory, tokenizer, file, args, work / f"pl{r}")
                elif name in ("raw_loop", "raw_loop_compiled"):
                    logs[name].append([])
                    rate = run_raw(factory, tokenizer, file, args, compiled=name == "raw_loop_compiled",
                                   log=logs[name][-1])
                    if name == "raw_loop_compiled":
                        steps = logs[name][-1]
                        print(f"[{model}] round {r + 1}: raw_loop_compiled first step {steps[0]['seconds']:.1f} s "
                              f"(build + compile); graphs compiled per step "
                              f"{[s['graphs'] for s in steps]}; batch shapes {[s['shape'] for s in steps]}",
                              flush=True)
                else:
                    rate = run_hf_trainer(factory, tokenizer, file, args, work / f"hf{r}",
                                          grouped=name == "trainer_grouped")
                print(f"[{model}] round {r + 1}: {name:15s} {rate:8.1f} supervised tokens/s", flush=True)
                rates[name].append(rate)
        print(f"[{model}] load average after: {_load()}; optimizer {args.optimizer_text}")
        median = {name: statistics.median(v) for name, v in rates.items()}
        for name, v in rates.items():
            print(f"[{model}] {name:15s} median {median[name]:8.1f}  best {max(v):8.1f}  worst {min(v):8.1f} "
                  "supervised tokens/s")
        if logs["raw_loop"] and logs["raw_loop_compiled"]:
            break_even(model, logs["raw_loop"], logs["raw_loop_compiled"], args.warmup)
        others = [n for n in ("trainer", "trainer_grouped", "raw_loop") if n in rates]
        if "promptly" not in rates:
            return {}
        print(f"[{model}] best-round ratios: " + " ".join(
            f"vs_{n}={max(rates['promptly']) / max(rates[n]):.2f}" for n in others))
        return {f"vs_{n}": median["promptly"] / median[n] for n in others}


def break_even(model: str, eager: list[list[dict[str, Any]]], compiled: list[list[dict[str, Any]]],
               warmup: int) -> None:
    """Compile overhead (extra wall time of the warmup steps over eager, same batches, medians over
    rounds) and the steps a run needs before the per-step saving of the timed steps pays it back."""
    def warm(rounds: list[list[dict[str, Any]]]) -> list[float]:
        return [sum(s["seconds"] for s in steps[:warmup]) for steps in rounds]

    def steady(rounds: list[list[dict[str, Any]]]) -> float:
        return statistics.median(statistics.mean(s["seconds"] for s in steps[warmup:]) for steps in rounds)

    saving = steady(eager) - steady(compiled)
    cold = warm(compiled)[0] - statistics.median(warm(eager))
    warm_disk = statistics.median(warm(compiled)[1:]) - statistics.median(warm(eager)) if len(compiled) > 1 else None
    print(f"[{model}] compile: steady step {steady(eager):.2f} s eager vs {steady(compiled):.2f} s compiled "
          f"(median over rounds of the timed steps' mean); first {warmup} steps cost {cold:.1f} s more compiled "
          "(empty cache)" + (f", {warm_disk:.1f} s more with the on-disk cache warm" if warm_disk is not None else ""))
    paired = [statistics.mean(s["seconds"] for s in e[warmup:]) / statistics.mean(s["seconds"] for s in c[warmup:])
              for e, c in zip(eager, compiled, strict=False)]
    print(f"[{model}] compile: speed-up of the timed steps per round (eager / compiled step time, the two run "
          f"back to back): {' '.join(f'{x:.2f}' for x in paired)}")
    recompiles = [sum(1 for s in steps[1:] if s["graphs"]) for steps in compiled]
    print(f"[{model}] compile: steps after the first that compiled new graphs, per round: {recompiles}")
    if saving <= 0:
        print(f"[{model}] compile: break-even never (compiled steps are not faster)")
    else:
        print(f"[{model}] compile: break-even after {warmup + cold / saving:.0f} steps (empty cache)"
              + (f", {warmup + warm_disk / saving:.0f} steps (warm cache)" if warm_disk is not None else ""))


if __name__ == "__main__":
    main()
