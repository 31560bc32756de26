"""RagLitModule: fine-tunes a causal LM on promptly's batches with the loss on supervised tokens only.

Logs train/val loss and perplexity (token-weighted), and after each validation the greedy answers to
a few validation questions (a table in W&B, samples.jsonl in the run folder, exact match and F1).
Checkpoints of LoRA runs hold the adapters only; every checkpoint carries the RNG state, so a
resumed run draws the same dropout masks as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from lightning.pytorch.plugins.precision import FSDPPrecision, MixedPrecision
from lightning.pytorch.strategies import FSDPStrategy
from rich.console import Console
from rich.table import Table
from torchmetrics import MeanMetric

from promptly.errors import ConfigError
from promptly.model.generation import SamplingConfig, exact_match, generate, token_f1
from promptly.model.loss import supervised_loss
from promptly.utils.metric_logger import metric_loggers

if TYPE_CHECKING:  # the module runs without Hydra/OmegaConf (benchmarks/gpu_train_throughput.py)
    from promptly.model.factory import ModelFactory

log = logging.getLogger(__name__)


def fast_adam_kwargs(factory: Any, params: list[torch.nn.Parameter], fused_ok: bool = True) -> dict[str, Any]:
    """`fused=True` for torch's Adam/AdamW when neither fused nor foreach was set and torch has a fused kernel
    for the parameters' device (CPU, CUDA), else `foreach=True`: one kernel over all tensors instead of a
    Python loop per tensor. `fused_ok` off: Lightning's mixed precision refuses to clip the gradients of a
    fused optimizer (it would unscale them itself), so those runs get foreach."""
    func, keywords = getattr(factory, "func", None), getattr(factory, "keywords", {}) or {}
    if func not in (torch.optim.AdamW, torch.optim.Adam) or not params:
        return {}
    if keywords.get("fused") is not None or keywords.get("foreach") is not None:
        return {}
    devices = {p.device.type for p in params}
    if fused_ok and devices <= {"cpu", "cuda"} and len(devices) == 1 and all(p.is_floating_point() for p in params):
        return {"fused": True}
    return {"foreach": True}


def compile_decoder_layers(net: torch.nn.Module) -> int:
    """torch.compile each decoder layer in place (regional compilation: one graph serves every layer, and
    parameter names, so checkpoints, are unchanged), with symbolic sequence lengths so length-grouped
    batches do not recompile. Returns how many layers were compiled. Why it is opt-in on a CPU:
    benchmarks/README.md (compile time against the per-step saving)."""
    layers = [m for m in net.modules() if type(m).__name__.endswith("DecoderLayer")]
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)


class RagLitModule(L.LightningModule):
    """The model is built in configure_model (under the strategy, e.g. FSDP), not at instantiation."""

    def __init__(
        self,
        model: ModelFactory,
        tokenizer: Any,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        samples: int = 4,
        max_new_tokens: int = 64,
        scheduler_interval: str = "step",
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.factory, self.tokenizer = model, tokenizer
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.samples, self.max_new_tokens = samples, max_new_tokens
        if scheduler_interval not in ("step", "epoch"):
            raise ConfigError(f"module.scheduler_interval must be step or epoch, got {scheduler_interval!r}")
        self.scheduler_interval = scheduler_interval
        self.compile_layers = compile
        self.net: torch.nn.Module | None = None
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.strict_loading = not model.adapter_only  # adapter-only checkpoints lack the frozen base
        self.last_samples: list[dict[str, Any]] = []

    def configure_model(self) -> None:
        if self.net is None:
            self.net = self.factory.build()
            if self.compile_layers:
                compile_decoder_layers(self.net)

    # Compiled layers serve training only: validation, test and the greedy answers (no grad, a KV cache,
    # one-token steps) would each compile graphs of their own for a handful of batches.
    def on_validation_model_eval(self) -> None:
        super().on_validation_model_eval()
        if self.compile_layers:
            torch.compiler.set_stance("force_eager")

    def on_validation_model_train(self) -> None:
        if self.compile_layers:
            torch.compiler.set_stance("default")
        super().on_validation_model_train()

    # -- loss ----------------------------------------------------------------------------------------
    def _loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.net is not None, "configure_model() builds the network"
        fsdp = self._trainer is not None and isinstance(self.trainer.strategy, FSDPStrategy)
        # Under FSDP only the root forward gathers the root's shards: no head-only shortcut.
        return supervised_loss(self.net, batch, head_only_on_labels=not fsdp)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss_sum, n = self._loss(batch)
        loss = loss_sum / n.clamp(min=1)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=max(int(n), 1))
        self.log("train/ppl", torch.exp(loss.detach()), on_step=True, on_epoch=False, batch_size=1)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss_sum, n = self._loss(batch)
        self.val_loss.update(loss_sum / n.clamp(min=1), weight=n)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss_sum, n = self._loss(batch)
        self.test_loss.update(loss_sum / n.clamp(min=1), weight=n)

    def on_validation_epoch_end(self) -> None:
        loss = self.val_loss.compute()
        self.val_loss.reset()
        self.log("val/loss", loss, prog_bar=True)
        self.log("val/ppl", torch.exp(loss))
        if self.samples > 0 and not self.trainer.sanity_checking:
            self._answer_samples()

    def on_test_epoch_end(self) -> None:
        loss = self.test_loss.compute()
        self.test_loss.reset()
        self.log("test/loss", loss)
        self.log("test/ppl", torch.exp(loss))

    # -- greedy answers ------------------------------------------------------------------------------
    def _answer_samples(self) -> None:
        datamodule: Any = getattr(self.trainer, "datamodule", None)
        samples = datamodule.samples(self.samples) if hasattr(datamodule, "samples") else []
        if not samples:
            return
        answers = generate(self.net, self.tokenizer, [s.prompt_ids for s in samples],
                           SamplingConfig(batch_size=len(samples), max_new_tokens=self.max_new_tokens))
        rows = [{"epoch": self.current_epoch, "step": self.global_step, "question": s.question,
                 "reference": s.answer, "generated": a, "exact_match": exact_match(a, s.answer),
                 "f1": token_f1(a, s.answer)} for s, a in zip(samples, answers, strict=True)]
        self.last_samples = rows
        self.log("val/sample_exact_match", sum(r["exact_match"] for r in rows) / len(rows))
        self.log("val/sample_f1", sum(r["f1"] for r in rows) / len(rows))
        if self.trainer.is_global_zero:
            self._publish_samples(rows)

    def _publish_samples(self, rows: list[dict[str, Any]]) -> None:
        columns = ["epoch", "step", "question", "reference", "generated"]
        for logger in metric_loggers(self.loggers):
            logger.log_table("val/samples", columns, [[r[c] for c in columns] for r in rows])
        out = Path(self.trainer.default_root_dir) / "samples.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        table = Table(title=f"greedy answers, epoch {self.current_epoch}", show_lines=True)
        for c in ("question", "reference", "generated"):
            table.add_column(c, overflow="fold")
        for r in rows:
            table.add_row(r["question"], r["reference"], r["generated"])
        Console(stderr=True).print(table)

    # -- optimisation --------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        decay: list[torch.nn.Parameter] = []
        no_decay: list[torch.nn.Parameter] = []
        for p in self.parameters():
            if p.requires_grad:
                (no_decay if p.ndim < 2 else decay).append(p)  # biases and norm weights: no decay
        keywords = getattr(self.optimizer_factory, "keywords", {}) or {}
        groups: list[dict[str, Any]] = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
        if "weight_decay" in keywords:
            groups[0]["weight_decay"] = keywords["weight_decay"]
        params = [g for g in groups if g["params"]]
        fast = fast_adam_kwargs(self.optimizer_factory, decay + no_decay, fused_ok=self._fused_ok())
        optimizer = self.optimizer_factory(params=params, **fast)
        if self.scheduler_factory is None:
            return optimizer
        total = int(self.trainer.max_epochs or 1) if self.scheduler_interval == "epoch" else self._total_steps()
        scheduler = self.scheduler_factory(optimizer=optimizer, total_steps=max(total, 1))
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval, "frequency": 1}}

    def _fused_ok(self) -> bool:
        trainer = self._trainer
        if trainer is None or not trainer.gradient_clip_val:
            return True
        return not isinstance(trainer.precision_plugin, (MixedPrecision, FSDPPrecision))

    def _total_steps(self) -> int:
        """Optimizer steps of the whole run.

        Not `trainer.estimated_stepping_batches` when the datamodule can say: that property builds the
        train dataloader before a checkpoint is restored, and Lightning then never hands the saved
        dataloader position to it, so a resumed run would restart its epoch from the first batch.
        """
        trainer = self.trainer
        per_epoch = getattr(getattr(trainer, "datamodule", None), "train_batches_per_epoch", None)
        if per_epoch is None:
            return int(trainer.estimated_stepping_batches)
        batches = per_epoch()
        limit = trainer.limit_train_batches
        if isinstance(limit, int):
            batches = min(batches, limit)
        elif limit is not None:
            batches = int(batches * limit)
        steps = math.ceil(batches / trainer.accumulate_grad_batches) * max(int(trainer.max_epochs or 0), 0)
        if trainer.max_steps > 0:
            steps = min(steps, trainer.max_steps) if steps > 0 else trainer.max_steps
        return max(steps, 1)

    # -- checkpoints ---------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.factory.adapter_only:
            trainable = {name for name, p in self.named_parameters() if p.requires_grad}
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["promptly"] = {"rng": rng, "adapter_only": self.factory.adapter_only,
                                  "model": self.factory.name_or_path}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rng = checkpoint.get("promptly", {}).get("rng")
        if rng:
            torch.set_rng_state(rng["torch"])
            if "cuda" in rng and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])
