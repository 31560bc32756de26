"""`promptly train`: instantiate the datamodule, module, callbacks, loggers and trainer from the
config, fit (and optionally test), export the model, and return the optimised metric to sweepers.

    promptly train experiment=smoke
    promptly train -m model.peft.r=4,8 optim.lr=1e-4,3e-4 experiment=smollm2_135m_lora
    promptly train experiment=smollm2_135m_lora hparams_search=optuna
    promptly train experiment=smoke ckpt_path=logs/train/runs/<time>/checkpoints/last.ckpt
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.strategies import FSDPStrategy
from omegaconf import DictConfig, OmegaConf, open_dict

import promptly.verbs.schemas  # noqa: F401  (registers the config schemas before Hydra composes)
from promptly.model.export import export_model
from promptly.model.factory import ModelFactory
from promptly.model.loading import trained_data_settings
from promptly.utils.hardware import apply_threads, choose_precision, detect_hardware
from promptly.utils.instantiators import instantiate_callbacks, instantiate_loggers
from promptly.utils.redact import redacted_container
from promptly.verbs.entry import hydra_entry
from promptly.verbs.task_wrapper import TaskOutput, save_config, task_wrapper

log = logging.getLogger(__name__)


def resolve_precision(value: Any, accelerator: str = "auto", adapter_only: bool = True,
                      weight_dtype: str = "auto") -> Any:
    """trainer.precision as Lightning takes it (`auto` resolved for this machine: see choose_precision)."""
    if str(value) != "auto":
        return value
    return choose_precision("auto", weight_dtype, adapter_only, detect_hardware(accelerator)).precision


def resolve_hardware(cfg: DictConfig, factory: ModelFactory) -> dict[str, Any]:
    """Precision, base-weight dtype and torch threads for this run, chosen once, printed once, and written
    back into cfg (so the saved config.yaml holds what ran) and into result.json."""
    hardware = detect_hardware(str(cfg.trainer.get("accelerator", "auto")))
    choice = choose_precision(str(cfg.trainer.precision), factory.dtype_name, factory.adapter_only, hardware)
    factory.dtype_name = choice.weight_dtype
    threads = apply_threads()
    with open_dict(cfg):
        cfg.trainer.precision = choice.precision
        cfg.model.dtype = choice.weight_dtype
    log.info("precision: %s, base weights %s (%s)", choice.precision, choice.weight_dtype, choice.reason)
    resolved: dict[str, Any] = {"precision": choice.precision, "weight_dtype": choice.weight_dtype,
                                "precision_reason": choice.reason}
    resolved.update(torch_threads=threads.threads, threads_reason=threads.reason)
    resolved["compile"] = bool(cfg.get("module", {}).get("compile", False))  # opt-in: benchmarks/README.md
    return resolved


def instantiate_with(node: DictConfig, **objects: Any) -> Any:
    """Instantiate a config node with live objects as extra arguments (schemas are closed to new keys)."""
    plain = OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    return instantiate(plain, **objects)


def build(cfg: DictConfig) -> dict[str, Any]:
    """Every object of a run, nothing started: tests and benchmarks reuse it."""
    L.seed_everything(int(cfg.seed), workers=True)
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")
    factory: ModelFactory = instantiate(cfg.model)
    resolved = resolve_hardware(cfg, factory)
    tokenizer = factory.load_tokenizer()
    embedder = instantiate(cfg.embedder) if str(cfg.data.task) == "rag_qa" else None
    datamodule = instantiate_with(cfg.data, store=instantiate(cfg.store), tokenizer=tokenizer, embedder=embedder,
                                  context_length=factory.context_length,
                                  attn_implementation=factory.attn_implementation)
    module = instantiate_with(cfg.module, model=factory, tokenizer=tokenizer, optimizer=instantiate(cfg.optim),
                              scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None)
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    verbose = bool(cfg.get("verbose", False))
    if not verbose:
        os.environ.setdefault("WANDB_QUIET", "true")  # no end-of-run history/summary banner
    loggers = instantiate_loggers(cfg.get("logger"))
    extra: dict[str, Any] = {}
    if cfg.trainer.get("enable_progress_bar") is None:
        extra["enable_progress_bar"] = sys.stderr.isatty()  # else ProgressLog prints plain lines
    if verbose:
        extra["enable_model_summary"] = True
    trainer: L.Trainer = instantiate_with(cfg.trainer, callbacks=callbacks, logger=loggers or False, **extra)
    return {"cfg": cfg, "resolved": resolved, "factory": factory, "tokenizer": tokenizer, "datamodule": datamodule,
            "module": module, "callbacks": callbacks, "loggers": loggers, "trainer": trainer}


def _floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if getattr(v, "numel", lambda: 1)() == 1}


def run(cfg: DictConfig) -> TaskOutput:
    """One training run (no failure handling: `train` adds it)."""
    objects = build(cfg)
    save_config(cfg, Path(cfg.paths.output_dir))  # again, with the precision and dtype resolved
    trainer: L.Trainer = objects["trainer"]
    datamodule, module = objects["datamodule"], objects["module"]
    for logger in objects["loggers"]:
        logger.log_hyperparams(redacted_container(cfg))
    metrics: dict[str, float] = {}
    if cfg.get("train", True):
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        metrics.update(_floats(trainer.callback_metrics))
    checkpoint: Any = trainer.checkpoint_callback
    best = str(checkpoint.best_model_path) if checkpoint is not None else ""
    objects["best_model_path"] = best or None
    if cfg.get("test", False):
        trainer.test(module, datamodule=datamodule, ckpt_path=best or None)
        metrics.update(_floats(trainer.callback_metrics))
    for split, stats in datamodule.stats.items():
        metrics.update({f"data/{split}_{k}": float(v) for k, v in stats.items()})
    for logger in objects["loggers"]:
        logger.log_hyperparams({"data_stats": datamodule.stats})
    if cfg.get("export", False) and trainer.is_global_zero and module.net is not None:
        if isinstance(trainer.strategy, FSDPStrategy):
            log.warning("export skipped under FSDP: convert the sharded checkpoint %s instead", best)
        else:
            # The best weights (already loaded if the test ran on them), else the final ones.
            objects["export_dir"] = export_model(module, Path(cfg.paths.output_dir) / "model",
                                                 None if cfg.get("test", False) else best or None,
                                                 data=trained_data_settings(cfg.data))
    return metrics, objects


train = task_wrapper(run)
"""One run with the wrapper's run-folder contract: what tests and benchmarks call."""

main = hydra_entry("train")(run)


if __name__ == "__main__":
    main()
