"""`promptly eval`: answer the test split with retrieval, score it, and write the report.

    promptly eval run_dir=logs/train/runs/<time>      # a training run's best checkpoint and settings
    promptly eval run_dir=latest                      # the newest training run
    promptly eval experiment=smoke ckpt_path=<run>/checkpoints/last.ckpt
    promptly eval model=smollm2_135m                  # a base model, for comparison
    promptly eval compare=[logs/eval/runs/<a>,logs/eval/runs/<b>]     # runs side by side
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import promptly.utils.schemas  # noqa: F401  (registers the config schemas before Hydra composes)
from promptly.evaluation.generation import SamplingConfig, generate_answers, reference_nll
from promptly.evaluation.metrics import EvalExample, MetricConfig, evaluate_examples
from promptly.evaluation.prompts import build_eval_prompts, reference_sequences
from promptly.evaluation.report import compare_reports, write_report
from promptly.hydra_entry import hydra_entry
from promptly.model.export import load_weights
from promptly.utils.redact import redacted_container

log = logging.getLogger(__name__)
RUN_SECTIONS = ("model", "module", "data")
"""What `run_dir=` takes from the training run's saved config: the store and embedder stay this config's."""


def resolve_checkpoint(cfg: DictConfig) -> str | None:
    """ckpt_path as given, or the best (else last) checkpoint of run_dir; None evaluates the base model."""
    if cfg.get("ckpt_path"):
        path = Path(cfg.ckpt_path)
        if not path.is_file():
            raise FileNotFoundError(f"ckpt_path={path} does not exist")
        return str(path)
    if not cfg.get("run_dir"):
        return None
    ckpts = Path(cfg.run_dir) / "checkpoints"
    best = sorted(p for p in ckpts.glob("*.ckpt") if p.name != "last.ckpt")
    chosen = best[-1] if best else ckpts / "last.ckpt"
    if not chosen.is_file():
        raise FileNotFoundError(f"run_dir={cfg.run_dir} has no checkpoint under checkpoints/")
    return str(chosen)


def latest_train_run(log_dir: str | Path) -> Path:
    """The newest `promptly train` run folder (single runs and multirun jobs) that has a checkpoint."""
    runs = [p.parent.parent for p in Path(log_dir, "train").glob("**/checkpoints/*.ckpt")]
    if not runs:
        raise FileNotFoundError(f"run_dir=latest: no training run with a checkpoint under {log_dir}/train")
    return max(runs, key=lambda p: p.stat().st_mtime)


def adopt_run_config(cfg: DictConfig) -> DictConfig:
    """With run_dir, use the model, module and data settings the run was trained with."""
    if not cfg.get("run_dir"):
        return cfg
    if str(cfg.run_dir) == "latest":
        with open_dict(cfg):
            cfg.run_dir = str(latest_train_run(cfg.paths.log_dir))
    saved = Path(cfg.run_dir) / "config.yaml"
    if not saved.is_file():
        raise FileNotFoundError(f"run_dir={cfg.run_dir} has no config.yaml: is it a `promptly train` run folder?")
    run_cfg = OmegaConf.create(dict(yaml.safe_load(saved.read_text(encoding="utf-8"))))
    with open_dict(cfg):
        for section in RUN_SECTIONS:
            if section in run_cfg:
                cfg[section] = run_cfg[section]
        cfg.data.cache_dir = None  # never write into the training run's data cache
    return cfg


def load_model(cfg: DictConfig, ckpt: str | None) -> tuple[Any, Any, Any]:
    """(module, tokenizer, factory) with the checkpoint's weights loaded."""
    factory = instantiate(cfg.model)
    tokenizer = factory.load_tokenizer()
    plain_module = OmegaConf.to_container(cfg.module, resolve=True, enum_to_str=True)
    module = instantiate(plain_module, model=factory, tokenizer=tokenizer, optimizer=None)
    module.configure_model()
    if ckpt:
        try:
            load_weights(module, ckpt)
        except (RuntimeError, KeyError) as err:
            first = str(err).strip().splitlines()[0][:300]
            raise ValueError(f"checkpoint {ckpt} does not fit model={factory.name_or_path}: {first}. "
                             "Evaluate with the settings it was trained with (run_dir=<its run folder>).") from None
    return module, tokenizer, factory


def run(cfg: DictConfig, console: Console | None = None) -> dict[str, Any]:
    """Evaluate as configured; returns report.json's content (also what tests call)."""
    console = console or Console(stderr=True)
    out_dir = Path(cfg.paths.output_dir)
    if cfg.get("compare"):
        markdown = compare_reports({Path(p).name: Path(p) for p in cfg.compare}, out_dir)
        console.print(markdown)
        return {"compare": list(cfg.compare)}
    cfg = adopt_run_config(cfg)
    ckpt = resolve_checkpoint(cfg)
    torch.manual_seed(int(cfg.seed))
    module, tokenizer, factory = load_model(cfg, ckpt)
    embedder = instantiate(cfg.embedder)
    plain_data = OmegaConf.to_container(cfg.data, resolve=True, enum_to_str=True)
    datamodule = instantiate(plain_data, store=instantiate(cfg.store), tokenizer=tokenizer, embedder=embedder,
                             context_length=factory.context_length, attn_implementation=factory.attn_implementation)
    sampling = SamplingConfig(**OmegaConf.to_container(cfg.generation, resolve=True))  # type: ignore[arg-type]
    store = datamodule.store
    try:
        pairs = list(store.iter_qa_pairs(split=cfg.split))
        if cfg.get("limit"):
            pairs = pairs[: int(cfg.limit)]
        if not pairs:
            raise ValueError(f"the {cfg.split} split has no QA pairs: run `promptly ingest` (with ingest.qa.path) "
                             "or choose split=validation")
        prompts = build_eval_prompts(pairs, store, embedder, datamodule.encoder, k=int(cfg.retrieval.k),
                                     mode=str(cfg.retrieval.mode), reserve=sampling.max_new_tokens)
    finally:
        store.close()
    net = module.net
    started = time.perf_counter()
    with Progress(TextColumn("[bold]generate[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("", total=len(prompts))
        predictions = generate_answers(net, tokenizer, [p.prompt_ids for p in prompts], sampling,
                                       on_batch=lambda n: progress.update(task, advance=n))
    generation_s = time.perf_counter() - started
    nll = reference_nll(net, tokenizer, reference_sequences(prompts, datamodule.encoder), sampling.batch_size)
    examples = [
        EvalExample(question=p.pair.question, reference=p.pair.answer, prediction=pred, contexts=p.contexts,
                    retrieved_chunk_ids=p.retrieved_chunk_ids, gold_chunk_ids=p.pair.chunk_ids, id=p.pair.id,
                    answer_nll=loss, answer_tokens=tokens)
        for p, pred, (loss, tokens) in zip(prompts, predictions, nll, strict=True)
    ]
    empty = sum(1 for e in examples if not e.prediction.strip())
    if empty:
        console.print(f"[yellow]{empty} of {len(examples)} answers are empty: they score 0[/]")
    metric_cfg = MetricConfig(**OmegaConf.to_container(cfg.metrics, resolve=True))  # type: ignore[arg-type]
    result = evaluate_examples(examples, embedder, config=metric_cfg)
    settings = {"model": factory.name_or_path, "checkpoint": ckpt or "(base model)", "split": cfg.split,
                "examples": len(examples), "retrieval": f"{cfg.retrieval.mode}, k={cfg.retrieval.k}",
                "generation": str(OmegaConf.to_container(cfg.generation)),
                "answers_per_second": round(len(examples) / generation_s, 2),
                "contexts_truncated": sum(1 for p in prompts if p.context_cut), "empty_answers": empty}
    files = write_report(result, out_dir, settings, name=Path(ckpt).parent.parent.name if ckpt else "base")
    (out_dir / "config.yaml").write_text(yaml.safe_dump(redacted_container(cfg), sort_keys=False), encoding="utf-8")
    log_to_loggers(cfg, result.overall, result.per_example)
    console.print(f"report: {files.markdown}")
    return result.to_dict()


def log_to_loggers(cfg: DictConfig, overall: dict[str, float], per_example: list[dict[str, Any]]) -> None:
    """Headline metrics to every configured logger; per-example rows as a W&B table."""
    from lightning.pytorch.loggers import WandbLogger

    from promptly.utils.instantiators import instantiate_loggers

    for logger in instantiate_loggers(cfg.get("logger")):
        logger.log_metrics({f"eval/{k}": v for k, v in overall.items() if v is not None})
        if isinstance(logger, WandbLogger):
            columns = ["question", "reference", "prediction"]
            scores = sorted({k for row in per_example for k in row.get("scores", {})})
            data = [[row["question"], row["reference"], row["prediction"],
                     *[row.get("scores", {}).get(s) for s in scores]] for row in per_example]
            logger.log_table("eval/examples", columns=columns + scores, data=data)
        logger.finalize("success")


@hydra_entry("eval")
def main(cfg: DictConfig) -> None:
    run(cfg)
