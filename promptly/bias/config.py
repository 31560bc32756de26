"""Typed schema of `promptly bias` (configs/bias.yaml), registered in promptly/verbs/schemas.py, so a
typo in a bias setting or a rubric file fails at composition naming the valid keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from promptly.bias.balance import BalanceSettings
from promptly.bias.bbq import BBQ_COMMIT, BBQ_URL
from promptly.settings import ModelChoice, RetrievalSettings, VerbGroups


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
class LocalJudgeConfig:
    """`judge=local_hf`: a causal LM in this process scores each answer from its next-token probabilities."""

    _target_: str = "promptly.bias.judges.LocalJudge"
    model: Any = None
    """A model option (configs/model), e.g. model@judge.model=qwen2_5_0_5b."""
    device: str | None = None
    """null: cuda when available, else cpu."""
    max_context_chars: int = 2000
    """The retrieved context shown to the judge, cut to this many characters (0: the question alone)."""


@dataclass
class PairwiseJudgeConfig(LocalJudgeConfig):
    """`judge=local_pairwise`: both answers shown, "which relies on a stereotype?", asked in both orders."""

    _target_: str = "promptly.bias.pairwise.PairwiseJudge"


@dataclass
class LikelihoodJudgeConfig(LocalJudgeConfig):
    """`judge=local_likelihood`: of two answers, the one the model itself expects more is the biased one."""

    _target_: str = "promptly.bias.pairwise.LikelihoodJudge"
    baseline_question: str | None = None
    """A neutral question for PMI (e.g. "Who is one of the people mentioned?"); null: none."""


@dataclass
class OpenAIJudgeConfig:
    """`judge=openai_compatible`: any OpenAI-compatible chat endpoint asked for a JSON score."""

    _target_: str = "promptly.bias.judges.OpenAIJudge"
    model: str = "gpt-4o-mini"
    """The endpoint's model name."""
    base_url: str | None = None
    """null: api.openai.com."""
    api_key_env: str = "OPENAI_API_KEY"
    """The environment variable holding the key (the key itself is never in a config)."""
    temperature: float = 0.0
    max_tokens: int = 256
    json_mode: bool = True
    """response_format={"type": "json_object"}; false for servers without it."""
    timeout: float = 60.0
    """Seconds per request."""
    max_retries: int = 3
    """Retries per request (timeouts, 429s, 5xx), exponential backoff with jitter."""
    concurrency: int = 4
    """Requests in flight at once."""


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


DEFAULT_CATEGORIES = ["Gender_identity", "Nationality", "Religion", "Sexual_orientation"]
"""BBQ categories the default calibration reads: none of them was used to choose the default judge
(benchmarks/bias_judge.py chose on Age and Disability_status)."""


class BiasAction(StrEnum):
    report = "report"
    """Probe, grade and report (with the judge's calibration at the top)."""
    calibrate = "calibrate"
    """Only measure the judge on the reference pairs: calibration.{json,md}."""


@dataclass
class CalibrationSettings:
    """How the judge is checked before its scores are reported (promptly/bias/calibration.py)."""

    enabled: bool = True
    """Measure the judge (or read its cached result); false: the report says the judge is uncalibrated."""
    source: str = "bbq"
    """bbq: the public BBQ release at `bbq_commit`, downloaded once into <state_dir>/bbq; or a JSONL file
    (or folder) of BBQ items or of pairs {category, kind, question, context, biased, fair}."""
    categories: list[str] = field(default_factory=lambda: list(DEFAULT_CATEGORIES))
    """Only these categories; []: every category of the source."""
    per_category: int | None = 20
    """At most this many reference items per category (two pairs each), drawn by `seed`; null: all.
    Small by default so a report stays quick; `promptly bias calibrate calibration.per_category=null`
    measures on everything."""
    seed: int = 0
    """Draws the sample of items."""
    cache: bool = True
    """Reuse a result measured with the same judge config, rubric and pair settings
    (<state_dir>/bias_calibration/<key>.json); false: measure again (and refresh the cache)."""
    bbq_commit: str = BBQ_COMMIT
    """The nyu-mll/BBQ commit whose data files are read (pinned: the same settings, the same pairs)."""
    bbq_url: str = BBQ_URL
    """Where a category's file is fetched from ({commit} and {category} filled in)."""
    timeout: float = 30.0
    """Seconds to wait for one BBQ download."""


@dataclass
class BalanceCheck(BalanceSettings):
    check: bool = True
    """Read the store's data balance into the report."""


@dataclass
class BiasConfig(VerbGroups, ModelChoice):
    """`promptly bias`: counterfactual probes answered with retrieval, graded on the rubric; data balance."""

    task_name: str = "bias"
    action: BiasAction = BiasAction.report
    """report (probe, grade, report) or calibrate (only measure the judge): `promptly bias calibrate`."""
    served: bool = False
    """Probe the version the server loads (the store's active model version, from the local registry)."""
    judge: Any = None
    """The judge (configs/judge): local_hf or openai_compatible."""
    bias_rubric: RubricConfig = field(default_factory=RubricConfig)
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    probes: ProbeSettings = field(default_factory=ProbeSettings)
    thresholds: Thresholds = field(default_factory=Thresholds)
    balance: BalanceCheck = field(default_factory=BalanceCheck)
    calibration: CalibrationSettings = field(default_factory=CalibrationSettings)
