"""Metric directions are declared once (promptly/metrics_catalog.py) and every ranking reads them:
`promptly runs`, the checkpoint callback's mode, the Optuna sweeper's direction, and publishing."""

from __future__ import annotations

import pytest

from promptly.errors import ConfigError
from promptly.metrics_catalog import fact, mode
from promptly.verbs.runs import direction

from .conftest import compose, resolved


@pytest.mark.parametrize(("metric", "expected"), [
    ("faithfulness", "max"), ("eval/coverage", "max"), ("mrr", "max"), ("recall@5", "max"),
    ("val/sample_exact_match", "max"), ("bleu", "max"), ("val/loss", "min"), ("perplexity", "min"),
    ("val/ppl", "min"), ("train/peak_memory_mb", "min")])
def test_declared_directions(metric: str, expected: str) -> None:
    assert mode(metric) == expected and direction(metric) == expected
    assert fact(metric).description


def test_an_undeclared_metric_is_an_error_unless_the_direction_is_given() -> None:
    with pytest.raises(ConfigError, match="no declared direction"):
        mode("val/made_up")
    assert mode("val/made_up", "max") == "max"


@pytest.mark.parametrize(("metric", "lightning", "optuna"), [
    ("val/loss", "min", "minimize"), ("val/sample_f1", "max", "maximize")])
def test_checkpointing_and_sweeps_read_the_declaration(metric: str, lightning: str, optuna: str) -> None:
    cfg = resolved(compose("train", [f"optimized_metric={metric}"]))
    assert cfg.callbacks.model_checkpoint.mode == lightning
    sweep = compose("train", ["hparams_search=optuna", f"optimized_metric={metric}"])
    assert sweep.hydra.sweeper.direction == optuna
