"""Setting blocks that verbs and stages share: retrieval, evidence, the model choice, the groups an
answering verb composes.

Libraries (answering, evidence, serving, bias) read these dataclasses, and the verbs' schemas
(promptly/verbs/schemas.py) embed them, so they live below both: a stage package never imports a verb.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from promptly.data.config import RetrievalMode
from promptly.errors import ConfigError


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
