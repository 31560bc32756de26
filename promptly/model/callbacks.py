"""SupervisedThroughput: the tokens that teach (non-padding, non-prompt) per second, and peak memory;
ProgressLog: plain progress lines when no progress bar is shown.

Tokens/s over all positions flatters padding and long prompts; supervised tokens/s is the number a
change to batching, packing or masking should move.
"""

from __future__ import annotations

import logging
import resource
import time
from typing import Any

import lightning as L
import torch

log = logging.getLogger(__name__)


def peak_memory_mb(device: torch.device | None = None) -> float:
    """Peak allocated GPU memory on a CUDA device, else the process's peak resident memory."""
    if device is not None and device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class SupervisedThroughput(L.Callback):
    """Logs train/supervised_tokens_per_sec (window of log_every_n_steps batches) and train/peak_memory_mb.

    The first `warmup_steps` batches (allocator warm-up, lazy initialisation) are not timed.
    `tokens` and `seconds` hold the totals over the timed batches.
    """

    def __init__(self, log_every_n_steps: int = 10, warmup_steps: int = 2) -> None:
        self.log_every_n_steps, self.warmup_steps = log_every_n_steps, warmup_steps
        self.tokens, self.seconds, self.examples = 0, 0.0, 0
        self._batches = 0
        self._window_start: float | None = None
        self._window_tokens = 0

    def _now(self, device: torch.device) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self._batches == self.warmup_steps:
            self._window_start = self._now(pl_module.device)
            self._total_start = self._window_start

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._batches += 1
        if self._window_start is None:
            return
        n = int(batch["n_supervised"])
        self._window_tokens += n
        self.tokens += n
        self.examples += int(batch.get("n_examples", 0))
        if self._batches % self.log_every_n_steps and not trainer.is_last_batch:
            return
        now = self._now(pl_module.device)
        self.seconds = now - self._total_start
        elapsed = now - self._window_start
        if elapsed > 0:
            self._log(pl_module, {"train/supervised_tokens_per_sec": self._window_tokens / elapsed,
                                  "train/peak_memory_mb": peak_memory_mb(pl_module.device)})
        self._window_start, self._window_tokens = now, 0

    def _log(self, pl_module: L.LightningModule, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            pl_module.log(name, value, on_step=True, on_epoch=False, batch_size=1)


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class ProgressLog(L.Callback):
    """A plain log line every `every_n_steps` optimizer steps or `every_n_seconds`, whichever comes first:
    step/total, loss, supervised tokens/s and ETA. Quiet while Lightning shows its progress bar (a terminal),
    so a log file or CI output shows progress without the bar's carriage returns.
    """

    def __init__(self, every_n_steps: int = 10, every_n_seconds: float = 60.0) -> None:
        self.every_n_steps, self.every_n_seconds = max(1, every_n_steps), every_n_seconds
        self._start = self._last = 0.0
        self._tokens = self._start_step = self._last_step = 0
        self.lines: list[str] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = self._last = time.perf_counter()
        self._start_step = self._last_step = trainer.global_step
        self._tokens = 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.progress_bar_callback is not None or not trainer.is_global_zero:
            return
        self._tokens += int(batch["n_supervised"]) if "n_supervised" in batch else 0
        step, now = trainer.global_step, time.perf_counter()
        due = step - self._last_step >= self.every_n_steps or now - self._last >= self.every_n_seconds
        if step == self._last_step or not (due or trainer.is_last_batch):
            return
        total = int(trainer.estimated_stepping_batches)
        done = step - self._start_step
        elapsed = now - self._start
        eta = elapsed / done * max(total - step, 0) if done else 0.0
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        loss_text = f"{float(loss):.4f}" if isinstance(loss, torch.Tensor) else "-"
        line = (f"step {step}/{total} epoch {trainer.current_epoch} loss {loss_text} "
                f"{self._tokens / elapsed if elapsed > 0 else 0.0:.1f} supervised tok/s "
                f"elapsed {_duration(elapsed)} ETA {_duration(eta)}")
        self.lines.append(line)
        log.info("%s", line)
        self._last, self._last_step = now, step
