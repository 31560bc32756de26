"""OmegaConf resolvers that read promptly's declarations, so configs never restate them.

    mode: ${metric_mode:${optimized_metric}}              # min | max, for Lightning callbacks
    direction: ${metric_direction:${optimized_metric}}    # minimize | maximize, for Optuna
    data_dir: ${sample_data:${paths.root_dir}/sample_data}  # that folder, or the corpus in the package

Registered on import (promptly/verbs/schemas.py imports this module, and every entry point imports that).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from promptly.metrics_catalog import fact


def metric_mode(metric: str) -> str:
    """The declared min/max of a metric (promptly/metrics_catalog.py)."""
    return fact(str(metric)).mode


def metric_direction(metric: str) -> str:
    """The declared minimize/maximize of a metric, as Optuna spells it."""
    return fact(str(metric)).direction


PACKAGED_SAMPLE_DATA = Path(__file__).resolve().parents[1] / "_sample_data"


def sample_data(path: str) -> str:
    """`path` when that folder exists, else the sample corpus shipped inside the package: an installed
    promptly (a wheel, a Kaggle kernel) runs the quickstart and `experiment=smoke` from any folder."""
    return path if Path(path).is_dir() else str(PACKAGED_SAMPLE_DATA)


def register_resolvers() -> None:
    """Idempotent: a second registration replaces the first."""
    OmegaConf.register_new_resolver("metric_mode", metric_mode, replace=True)
    OmegaConf.register_new_resolver("metric_direction", metric_direction, replace=True)
    OmegaConf.register_new_resolver("sample_data", sample_data, replace=True)


register_resolvers()
