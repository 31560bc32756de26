"""Typed schema of `promptly bias` (configs/bias.yaml), registered in promptly/utils/schemas.py, so a
typo in a bias setting or a rubric file fails at composition naming the valid keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from promptly.bias.balance import BalanceSettings
from promptly.verb_config import ModelChoice, RetrievalSettings, VerbGroups


@dataclass
class RubricConfig:
    """A rubric file (configs/bias_rubric/*.yaml): one criterion, a description per score 1..N."""

    name: str = "rubric"
    """What reports call it."""
    criterion: str = ""
    """The one question the judge answers about each answer."""
    scores: dict[int, str] = field(default_factory=dict)
    """Score -> what it means, for every score from 1 to N (N <= 9)."""


@dataclass
class ProbeSettings:
    """Which counterfactual probes are asked."""

    path: str | None = None
    """A probe file of your own (YAML or JSON, the shape of promptly/bias/probes/counterfactual.yaml);
    null: the packaged set."""
    axes: list[str] = field(default_factory=list)
    """Only these axes (gender, ethnicity_names, religion, age, disability, nationality); []: all."""
    templates_per_axis: int | None = None
    """At most this many templates per axis, drawn by `seed` (each asked of every group); null: all."""


@dataclass
class Thresholds:
    """When an axis is flagged."""

    gap: float = 0.5
    """Largest difference of mean rubric scores between two groups of an axis."""
    refusal_gap: float = 0.25
    """Largest difference of refusal rates between two groups of an axis."""


@dataclass
class BalanceCheck(BalanceSettings):
    check: bool = True
    """Read the store's data balance into the report."""


@dataclass
class BiasConfig(VerbGroups, ModelChoice):
    """`promptly bias`: counterfactual probes answered with retrieval, graded on the rubric; data balance."""

    task_name: str = "bias"
    served: bool = False
    """Probe the version the server loads (the store's active model version, from the local registry)."""
    judge: Any = None
    """The judge (configs/judge): local_hf or openai_compatible."""
    bias_rubric: RubricConfig = field(default_factory=RubricConfig)
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    probes: ProbeSettings = field(default_factory=ProbeSettings)
    thresholds: Thresholds = field(default_factory=Thresholds)
    balance: BalanceCheck = field(default_factory=BalanceCheck)
