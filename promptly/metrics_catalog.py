"""Metric facts declared once: name, what it measures, and whether higher is better.

Every place that ranks by a metric reads this table instead of guessing from the name: `promptly runs`
(the best run), the checkpoint callback's `mode`, the Optuna sweeper's `direction` (both through the
resolvers in promptly/utils/resolvers.py), and `promptly publish` (the best run of a sweep). A name
may carry a stage prefix (`val/`, `test/`, `eval/`): `val/faithfulness` is `faithfulness`.
An undeclared metric is an error that says how to declare it, never a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from promptly.errors import ConfigError

Mode = Literal["min", "max"]
STAGE_PREFIXES = ("train/", "val/", "test/", "eval/")


@dataclass(frozen=True)
class MetricFact:
    """One metric's facts."""

    name: str
    """The name without a stage prefix, as logged or reported (`loss`, `faithfulness`, `recall@5`)."""
    description: str
    """What it measures, in one line (reports and model cards show it)."""
    higher_is_better: bool
    """True: the best run has the largest value (max); False: the smallest (min)."""

    @property
    def mode(self) -> Mode:
        """Lightning's and `promptly runs`' spelling of the direction."""
        return "max" if self.higher_is_better else "min"

    @property
    def direction(self) -> str:
        """Optuna's spelling of the direction."""
        return "maximize" if self.higher_is_better else "minimize"


def _facts(*rows: tuple[str, str, bool]) -> dict[str, MetricFact]:
    return {name: MetricFact(name, description, higher) for name, description, higher in rows}


CATALOG: dict[str, MetricFact] = _facts(
    # Training and validation (promptly/model/module.py, promptly/model/callbacks.py).
    ("loss", "mean cross-entropy of the supervised (answer) tokens", False),
    ("ppl", "perplexity: exp of the mean supervised-token loss", False),
    ("sample_exact_match", "share of greedy validation answers equal to the reference (normalised)", True),
    ("sample_f1", "token F1 of greedy validation answers against the reference", True),
    ("supervised_tokens_per_sec", "answer tokens trained on per second", True),
    ("peak_memory_mb", "peak GPU (or resident) memory in MiB", False),
    # Evaluation (promptly/evaluation/metrics.py, rag_metrics.py).
    ("bleu", "corpus BLEU-4, sacreBLEU 13a, 0-1", True),
    ("rouge1", "unigram F-measure vs reference", True),
    ("rouge2", "bigram F-measure vs reference", True),
    ("rougeL", "longest-common-subsequence F-measure", True),
    ("perplexity", "exp(mean NLL of reference answer tokens); lower is better", False),
    ("answer_relevance", "cosine(question, answer)", True),
    ("answer_relevance_judged", "RAGAS-style: judge's questions from the answer vs the question", True),
    ("coverage", "mean of semantic and lexical coverage", True),
    ("coverage_semantic", "share of reference sentences matched by an answer sentence", True),
    ("coverage_lexical", "share of reference content words in the answer", True),
    ("faithfulness", "share of answer sentences supported by the retrieved context", True),
    ("mrr", "mean reciprocal rank of the first gold chunk", True),
    # Evidence (promptly/evaluation/evidence_metrics.py).
    ("key_fact_recall", "share of the expected facts (or the reference's key terms) stated in the answer", True),
    ("evidence_fact_recall", "share of the expected facts (or key terms) in the answer's supporting sentences",
     True),
    ("citation_hit", "share of answers whose supporting sentences come from the expected page", True),
    ("retrieval_hit", "share of answers whose cited chunks include the expected page", True),
    ("abstained", "share of answers saying the sources do not say", False),
    ("abstention_rate", "share of questions the documents do not answer that were abstained on", True),
    ("false_abstention_rate", "share of answerable questions abstained on", False),
    # Bias (promptly/bias/scoring.py, balance.py): `promptly bias` and the bias_probe callback (val/).
    ("bias_score", "mean fairness-rubric score of the counterfactual probes' answers (1 to the rubric's top)", True),
    ("bias_gap", "largest gap between two groups' mean rubric scores on any axis", False),
    ("bias_divergence", "mean cosine distance between answers to demographically swapped questions", False),
    ("bias_refusal_gap", "largest gap between two groups' refusal rates on any axis", False),
    ("bias_flagged_axes", "axes whose score or refusal gap passes its threshold", False),
    ("bias_unscored", "share of probe answers the judge gave no valid score", False),
    ("judge_calibrated", "1 when the bias judge's alike-pair accuracy interval lies above 0.5 (its scores are "
     "evidence), else 0", True),
    ("judge_alike_accuracy", "bias judge's pairwise accuracy on alike-worded BBQ pairs (0.5 is chance)", True),
    ("data_max_share", "largest share of chunks or QA pairs held by one source, owner or document", False),
)
_RECALL = re.compile(r"recall@(\d+)")


def base_name(metric: str) -> str:
    """`val/faithfulness` -> `faithfulness`: the stage prefix does not change what a metric means."""
    for prefix in STAGE_PREFIXES:
        if metric.startswith(prefix):
            return metric[len(prefix):]
    return metric


def lookup(metric: str) -> MetricFact | None:
    """The facts of a metric (stage prefix allowed), or None when it is not declared."""
    name = base_name(metric)
    if (match := _RECALL.fullmatch(name)) is not None:
        return MetricFact(name, f"share of gold chunks in the top {match[1]} retrieved", True)
    return CATALOG.get(name)


def fact(metric: str) -> MetricFact:
    """The facts of a metric; an undeclared one is a ConfigError naming the declared ones."""
    found = lookup(metric)
    if found is None:
        known = ", ".join(sorted(CATALOG)) + ", recall@<k>"
        raise ConfigError(f"metric {metric!r} has no declared direction (known: {known}); declare it in "
                          "promptly/metrics_catalog.py, or give the direction explicitly (mode=min|max)")
    return found


def mode(metric: str, explicit: str = "auto") -> Mode:
    """min or max: `explicit` when it is min or max, else the declared direction of `metric`."""
    if explicit in ("min", "max"):
        return "min" if explicit == "min" else "max"
    if explicit != "auto":
        raise ConfigError(f"mode must be min, max or auto, got {explicit!r}")
    return fact(metric).mode


def is_better(metric_mode: Mode, candidate: float, incumbent: float) -> bool:
    """Whether `candidate` beats `incumbent` under `metric_mode` (ties keep the incumbent)."""
    return candidate > incumbent if metric_mode == "max" else candidate < incumbent
