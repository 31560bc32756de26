"""Learning-rate schedules as `_partial_` targets: the module supplies the optimizer and the run's
number of optimizer steps (known only once the data is set up)."""

from __future__ import annotations

import math
from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def _warmup(step: int, warmup: int) -> float | None:
    return (step + 1) / (warmup + 1) if step < warmup else None


def _warmup_then(optimizer: Optimizer, total_steps: int, warmup_ratio: float, min_lr_ratio: float,
                 decay: Callable[[float], float]) -> LambdaLR:
    """Linear warm-up, then `min_lr_ratio + (1 - min_lr_ratio) * decay(progress)` for progress in [0, 1]."""
    warmup = int(total_steps * warmup_ratio)

    def factor(step: int) -> float:
        w = _warmup(step, warmup)
        if w is not None:
            return w
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_lr_ratio + (1 - min_lr_ratio) * decay(progress)

    return LambdaLR(optimizer, factor)


def warmup_cosine(optimizer: Optimizer, total_steps: int, warmup_ratio: float = 0.03,
                  min_lr_ratio: float = 0.0) -> LambdaLR:
    return _warmup_then(optimizer, total_steps, warmup_ratio, min_lr_ratio,
                        lambda progress: 0.5 * (1 + math.cos(math.pi * progress)))


def warmup_linear(optimizer: Optimizer, total_steps: int, warmup_ratio: float = 0.0,
                  min_lr_ratio: float = 0.0) -> LambdaLR:
    return _warmup_then(optimizer, total_steps, warmup_ratio, min_lr_ratio, lambda progress: 1 - progress)


def warmup_constant(optimizer: Optimizer, total_steps: int, warmup_ratio: float = 0.0) -> LambdaLR:
    warmup = int(total_steps * warmup_ratio)
    return LambdaLR(optimizer, lambda step: _warmup(step, warmup) or 1.0)
