"""Typed schemas of the entry configs' own settings (eval, ask), registered with the others in
promptly/utils/schemas.py, so `promptly eval splt=test` fails at composition naming the valid keys.

The config groups each entry composes (store, model, data, ...) have schemas of their own; here they
are typed `Any` and left to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from promptly.data.config import RetrievalMode
from promptly.errors import ConfigError
from promptly.evaluation.config import MetricConfig


class SplitName(StrEnum):
    train = "train"
    validation = "validation"
    test = "test"


class OutputFormat(StrEnum):
    text = "text"
    """The answer, numbered citations and the time taken, for people."""
    json = "json"
    """One JSON object on one line (logs go to stderr), for scripts."""


class AnswerStyle(StrEnum):
    generative = "generative"
    """The model's answer, with [n] after each sentence a source sentence supports."""
    extractive = "extractive"
    """The best supporting source sentences, quoted, each with its [n] (no generation)."""


@dataclass
class EvidenceSettings:
    """`evidence.*`: supporting sentences, inline markers, answer style and abstention (promptly/evidence.py)."""

    answer_style: AnswerStyle = AnswerStyle.generative
    """generative or extractive."""
    abstain_below: float = 0.30
    """Answer "The sources do not say" when no retrieved sentence supports the question this well (support
    in [0, 1]: geometric mean of embedder cosine and BM25 coverage; 0 never abstains). Chosen on the sample
    corpus's validation split and 8 unanswerable questions: benchmarks/README.md."""
    marker_threshold: float = 0.4
    """An answer sentence gets the [n] of the source sentence that supports it best from this support on."""
    max_sentences: int = 2
    """Supporting sentences an extractive answer quotes."""

    def __post_init__(self) -> None:
        if not (0.0 <= self.abstain_below <= 1.0 and 0.0 <= self.marker_threshold <= 1.0):
            raise ConfigError("evidence.abstain_below and evidence.marker_threshold are supports in [0, 1]")
        if self.max_sentences < 1:
            raise ConfigError("evidence.max_sentences must be at least 1")


@dataclass
class RetrievalSettings:
    """What the model is shown for each question."""

    k: int = 3
    """Chunks retrieved per question."""
    mode: RetrievalMode = RetrievalMode.hybrid
    """match_chunks' ranking: vector, text or hybrid."""


@dataclass
class ModelChoice:
    """Which model answers: one of run_dir, model_dir, or the `model` group (with ckpt_path)."""

    run_dir: str | None = None
    """A `promptly train` run folder, or `latest`: its best checkpoint and the settings it was trained with."""
    model_dir: str | None = None
    """An exported folder (`<run>/model`, a registry version) with promptly.json."""
    ckpt_path: str | None = None
    """A Lightning checkpoint, read with the `model` option's settings."""
    inference_dtype: str = "auto"
    """Weights' dtype when answering: auto is bfloat16 where the CPU (AVX512-BF16, AMX) or GPU computes it
    natively, else float32; float32 or bfloat16 to choose."""


@dataclass
class VerbGroups:
    """The groups an answering verb composes (each validated by its own schema)."""

    paths: Any = None
    store: Any = None
    embedder: Any = None
    data: Any = None
    model: Any = None
    generation: Any = None
    logger: Any = None
    seed: int = 42
    """Seeds sampling and anything random."""
    evidence: EvidenceSettings = field(default_factory=EvidenceSettings)
    """Supporting sentences, markers, answer style and abstention."""


@dataclass
class EvalConfig(VerbGroups, ModelChoice):
    """`promptly eval`: answer a split's questions with retrieval and score them."""

    task_name: str = "eval"
    split: SplitName = SplitName.test
    """The split to answer (fixed per document at ingest)."""
    limit: int | None = None
    """At most this many questions."""
    compare: list[str] = field(default_factory=list)
    """Eval run folders (or report.json files) to put side by side instead of evaluating."""
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    metrics: MetricConfig = field(default_factory=MetricConfig)
    """Metric settings (see docs/metrics.md)."""


@dataclass
class AskConfig(VerbGroups, ModelChoice):
    """`promptly ask "QUESTION"`: one answer with retrieved context and numbered citations."""

    task_name: str = "ask"
    question: str = ""
    """The question (the CLI's first positional argument)."""
    format: OutputFormat = OutputFormat.text
    """text or json."""
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    filter: dict[str, Any] | None = None
    """Chunk metadata the sources must match, e.g. {document_id: driftsync/install.md}."""


class SortMode(StrEnum):
    auto = "auto"
    """The metric's declared direction (promptly/metrics_catalog.py)."""
    min = "min"
    max = "max"


@dataclass
class RunsConfig:
    """`promptly runs`: the runs of a folder (or one multirun) with their overrides and final metrics."""

    paths: Any = None
    task_name: str = "runs"
    dir: str = "logs/train"
    """A folder of runs, a multirun folder, or one run."""
    sort_by: str | None = None
    """A metric name (e.g. val/loss); null: the runs' optimized_metric."""
    mode: SortMode = SortMode.auto
    """min, max, or auto."""
    metrics: list[str] = field(default_factory=lambda: ["val/loss", "val/ppl", "val/sample_exact_match",
                                                        "train/loss"])
    """Metric columns (metrics no run has are left out)."""
    limit: int | None = None
    """Show at most this many rows."""
