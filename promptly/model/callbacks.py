"""SupervisedThroughput: the tokens that teach (non-padding, non-prompt) per second, and peak memory.

Tokens/s over all positions flatters padding and long prompts; supervised tokens/s is the number a
change to batching, packing or masking should move.
"""

from __future__ import annotations

import resource
import time
from typing import Any

import lightning as L
import torch


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
