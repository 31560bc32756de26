"""OmegaConf resolvers that read promptly's declarations, so configs never restate them.

    mode: ${metric_mode:${optimized_metric}}              # min | max, for Lightning callbacks
    direction: ${metric_direction:${optimized_metric}}    # minimize | maximize, for Optuna

Registered on import (promptly/utils/schemas.py imports this module, and every entry point imports that).
"""

from __future__ import annotations

from omegaconf import OmegaConf

from promptly.metrics_catalog import fact


def metric_mode(metric: str) -> str:
    """The declared min/max of a metric (promptly/metrics_catalog.py)."""
    return fact(str(metric)).mode


def metric_direction(metric: str) -> str:
    """The declared minimize/maximize of a metric, as Optuna spells it."""
    return fact(str(metric)).direction


def register_resolvers() -> None:
    """Idempotent: a second registration replaces the first."""
    OmegaConf.register_new_resolver("metric_mode", metric_mode, replace=True)
    OmegaConf.register_new_resolver("metric_direction", metric_direction, replace=True)


register_resolvers()
