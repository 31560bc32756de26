"""Settings of the evaluation metrics (light: the entry configs' schemas import it at start-up)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from promptly.errors import ConfigError


@dataclass
class MetricConfig:
    """Settings of the metrics; they are written into every report."""

    rouge_stemmer: bool = True
    """Porter-stem tokens longer than three characters before ROUGE matching (rouge-score's use_stemmer)."""
    coverage_threshold: float = 0.6
    """Cosine at or above which a reference sentence counts as covered by an answer sentence."""
    faithfulness_threshold: float = 0.5
    """Cosine at or above which an answer sentence is close enough to the context to be supported."""
    rare_words: bool = True
    """Treat words outside the embedder's vocabulary as critical tokens in faithfulness."""
    check_negation: bool = True
    """Faithfulness: a sentence negated unlike its closest context sentence is unsupported."""
    judge_questions: int = 3
    """Questions the judge generates per answer for the RAGAS-style relevance."""
    recall_ks: tuple[int, ...] = (1, 3, 5)
    """The k of each recall@k."""

    def __post_init__(self) -> None:
        for name in ("coverage_threshold", "faithfulness_threshold"):
            if not -1.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} is a cosine similarity: it must lie in [-1, 1]")
        if not self.recall_ks or any(k < 1 for k in self.recall_ks):
            raise ConfigError("recall_ks must be positive integers")
        if self.judge_questions < 1:
            raise ConfigError("judge_questions must be at least 1")


class QuestionSubset(StrEnum):
    """Which questions of a question file are answered."""

    all = "all"
    """Every question."""
    held_out = "held_out"
    """The questions marked `held_out` (the default for a question without the key): what a report shows."""
    tuning = "tuning"
    """The others: free for tuning choices (an abstention threshold), never for the reported figures."""


@dataclass
class QuestionFileConfig:
    """`questions`: evaluate on a question file the user wrote (questions and expected facts, no reference
    prose) instead of a split's QA pairs (format: promptly/evaluation/question_file.py)."""

    path: str | None = None
    """A JSONL file of {id, question, facts, page, held_out, answerable}; null: answer the split."""
    subset: QuestionSubset = QuestionSubset.all
    """all, held_out or tuning."""
