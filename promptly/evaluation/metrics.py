"""Standard generation metrics (BLEU, ROUGE, answer-token perplexity) and `evaluate_examples`.

BLEU and ROUGE wrap torchmetrics' own classes, which match sacrebleu and rouge-score (tests check it
to 1e-4). Perplexity is our own `Metric`: torchmetrics' `Perplexity` neither shifts labels for causal
models nor uses log-softmax (it takes the log of a softmax, which underflows to inf in float32).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.text import ROUGEScore, SacreBLEUScore

from promptly.data.collate import IGNORE_INDEX
from promptly.evaluation import rag_metrics as rag
from promptly.evaluation.config import MetricConfig

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL")


class Bleu(SacreBLEUScore):
    """Corpus BLEU-4 on a 0-1 scale: sacreBLEU's `corpus_bleu(tokenize="13a")` divided by 100.

    Corpus-level, so it is not the mean of per-example BLEU: n-gram counts are pooled over the corpus
    before the geometric mean, as in every published BLEU. No smoothing (sacreBLEU's corpus default
    'exp' only matters when a whole corpus has no matching 4-gram, where both give ~0).
    """

    # The states are n-gram and length sums, so an update never needs the global state.
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(n_gram=4, tokenize="13a", lowercase=False, smooth=False, **kwargs)

    def update(self, preds: Sequence[str], target: Sequence[str] | Sequence[Sequence[str]]) -> None:
        """Predictions and one reference each (a string) or several (a list of strings)."""
        refs = [[t] if isinstance(t, str) else list(t) for t in target]
        super().update(list(preds), refs)


class Rouge(ROUGEScore):
    """ROUGE-1, ROUGE-2 and ROUGE-L F-measures, averaged over examples.

    Tokenisation is rouge-score's default: lowercase, every run of characters other than [a-z0-9]
    becomes a space, and (with `use_stemmer`, the default here) NLTK's Porter stemmer on tokens longer
    than three characters. ROUGE-L is the sentence-level LCS (rouge-score's `rougeL`, not `rougeLsum`).
    The mean is a plain average, not rouge-score's bootstrap `BootstrapAggregator` midpoint.
    """

    full_state_update = False  # per-example score lists: updates are independent

    def __init__(self, use_stemmer: bool = True, **kwargs: Any) -> None:
        super().__init__(use_stemmer=use_stemmer, rouge_keys=ROUGE_KEYS, accumulate="best", **kwargs)

    def compute(self) -> dict[str, Tensor]:
        """F-measures only, keyed rouge1 / rouge2 / rougeL."""
        full = super().compute()
        return {key: full[f"{key}_fmeasure"] for key in ROUGE_KEYS}

    def per_example(self) -> dict[str, list[float]]:
        """This process's per-example F-measures, in update order (before any distributed sync)."""
        return {key: [float(v) for v in getattr(self, f"{key}_fmeasure")] for key in ROUGE_KEYS}


def sentence_bleu(prediction: str, reference: str) -> float:
    """Per-example BLEU on a 0-1 scale: sacreBLEU's `sentence_bleu` (13a, 'exp' smoothing).

    torchmetrics has no 'exp' smoothing, and unsmoothed sentence BLEU is 0 whenever a short answer
    has no matching 4-gram, which makes per-example distributions useless; so this one calls sacrebleu.
    """
    import sacrebleu

    if not prediction.strip():
        return 0.0
    return float(sacrebleu.sentence_bleu(prediction, [reference], tokenize="13a").score) / 100.0


def answer_token_nll(
    logits: Tensor, labels: Tensor, ignore_index: int = IGNORE_INDEX
) -> tuple[Tensor, Tensor]:
    """Summed negative log-likelihood and token count per sequence, for a causal LM.

    `labels` are aligned with the input ids, as given to a Hugging Face causal LM: position t holds the
    token at t, or `ignore_index` for prompt and padding. Logits at t predict the token at t + 1, so
    both are shifted here; masked positions contribute neither loss nor count.
    """
    if logits.dim() != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(
            f"expected logits (B, T, V) and labels (B, T); got {tuple(logits.shape)}, {tuple(labels.shape)}"
        )
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    nll = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
        ignore_index=ignore_index, reduction="none",
    ).view(shift_labels.shape)
    mask = shift_labels.ne(ignore_index)
    return (nll * mask).sum(dim=1).double(), mask.sum(dim=1)


class AnswerPerplexity(Metric):
    """exp(total answer-token NLL / answer-token count), pooled over every batch and process.

    Summing NLL and counts (not averaging per batch) makes two half batches equal one full batch and
    weights every answer token equally, whatever the padding or the split across devices.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    nll_sum: Tensor
    token_count: Tensor

    def __init__(self, ignore_index: int = IGNORE_INDEX, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ignore_index = ignore_index
        self.add_state("nll_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("token_count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: Tensor, labels: Tensor) -> None:
        """Accumulate a batch of logits (B, T, V) and input-aligned labels (B, T)."""
        nll, count = answer_token_nll(logits.detach(), labels, self.ignore_index)
        self.nll_sum += nll.sum().to(self.nll_sum.device)
        self.token_count += count.sum().to(self.token_count.device)

    def compute(self) -> Tensor:
        """The perplexity; NaN when no answer token was seen."""
        if int(self.token_count) == 0:
            return torch.tensor(math.nan, dtype=torch.float64)
        return torch.exp(self.nll_sum / self.token_count)


def perplexity_from_nll(nll_sum: float, token_count: int) -> float | None:
    """exp(nll / tokens), or None when there are no tokens (the same formula as `AnswerPerplexity`)."""
    return math.exp(nll_sum / token_count) if token_count > 0 else None


# -- every metric over a list of examples -----------------------------------------------------------


@dataclass(frozen=True)
class EvalExample:
    """One question answered by the model under test, with what retrieval gave it."""

    question: str
    reference: str
    """The gold answer."""
    prediction: str
    """The model's answer ("" when it produced nothing)."""
    contexts: Sequence[str] = ()
    """Retrieved chunk texts, in rank order, as given to the model."""
    retrieved_chunk_ids: Sequence[str] = ()
    gold_chunk_ids: Sequence[str] = ()
    id: str = ""
    answer_nll: float | None = None
    """Summed NLL of the reference answer's tokens under the model (`answer_token_nll`), if computed."""
    answer_tokens: int = 0
    """How many tokens `answer_nll` sums over."""


@dataclass
class EvalResult:
    """Every metric overall and per example; what `write_report` renders and `compare_reports` reads.

    `per_example[i]` holds the example's fields, `scores` (metric -> value or None) and `details`
    (unsupported sentences, invented tokens, missing words, judge questions).
    """

    overall: dict[str, float]
    per_example: list[dict[str, Any]]
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"n_examples": len(self.per_example), "overall": self.overall, "config": self.config,
                "per_example": self.per_example}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalResult:
        return cls(dict(data["overall"]), list(data["per_example"]), dict(data.get("config", {})))


def evaluate_examples(
    examples: Sequence[EvalExample], embedder: rag.TextEncoder, *, judge: rag.Judge | None = None,
    config: MetricConfig | None = None,
) -> EvalResult:
    """Score every example with every metric, embedding each distinct text once.

    Overall BLEU is corpus BLEU and overall perplexity pools tokens over examples; every other overall
    value is the mean of the defined per-example values (a metric with none is left out).
    """
    cfg = config or MetricConfig()
    enc = rag.CachedEncoder(embedder)
    preds = [e.prediction for e in examples]
    refs = [e.reference for e in examples]
    bleu, rouge = Bleu(), Rouge(use_stemmer=cfg.rouge_stemmer)
    if examples:
        bleu.update(preds, refs)
        rouge.update(preds, refs)
    rouge_each = rouge.per_example()
    relevance = rag.answer_relevance([e.question for e in examples], preds, enc, judge, cfg.judge_questions)
    cover = rag.coverage(refs, preds, enc, cfg.coverage_threshold)
    faith = rag.faithfulness(preds, [list(e.contexts) for e in examples], enc, cfg.faithfulness_threshold,
                             cfg.rare_words, cfg.check_negation)
    ranks = rag.retrieval([list(e.retrieved_chunk_ids) for e in examples],
                          [list(e.gold_chunk_ids) for e in examples], cfg.recall_ks)
    rows: list[dict[str, Any]] = []
    for i, ex in enumerate(examples):
        scores: dict[str, float | None] = {
            "bleu": sentence_bleu(ex.prediction, ex.reference),
            **{key: rouge_each[key][i] for key in ROUGE_KEYS},
            "answer_relevance": relevance[i].cosine,
        }
        if judge is not None:
            scores["answer_relevance_judged"] = relevance[i].judged
        scores |= {"coverage": cover[i].combined, "coverage_semantic": cover[i].semantic,
                   "coverage_lexical": cover[i].lexical, "faithfulness": faith[i].score}
        scores |= {f"recall@{k}": ranks[i].recall[k] for k in cfg.recall_ks}
        scores["mrr"] = ranks[i].reciprocal_rank
        if ex.answer_nll is not None:
            scores["perplexity"] = perplexity_from_nll(ex.answer_nll, ex.answer_tokens)
        rows.append({
            "id": ex.id or str(i), "question": ex.question, "reference": ex.reference,
            "prediction": ex.prediction, "contexts": list(ex.contexts),
            "retrieved_chunk_ids": list(ex.retrieved_chunk_ids), "gold_chunk_ids": list(ex.gold_chunk_ids),
            "scores": scores,
            "details": {"unsupported_sentences": list(faith[i].unsupported),
                        "invented_tokens": list(faith[i].invented_tokens),
                        "missing_words": list(cover[i].missing_words),
                        "generated_questions": list(relevance[i].generated_questions)},
        })
    return EvalResult(_overall(rows, float(bleu.compute()) if examples else None, examples),
                      rows, asdict(cfg))


def _overall(rows: list[dict[str, Any]], corpus_bleu: float | None,
             examples: Sequence[EvalExample]) -> dict[str, float]:
    overall: dict[str, float] = {}
    for key in dict.fromkeys(k for row in rows for k in row["scores"]):
        values = [row["scores"].get(key) for row in rows]
        defined = [v for v in values if v is not None]
        if defined:
            overall[key] = sum(defined) / len(defined)
    if corpus_bleu is not None:
        overall["bleu"] = corpus_bleu
    with_nll = [e for e in examples if e.answer_nll is not None and e.answer_tokens > 0]
    if with_nll:
        nll = sum(e.answer_nll or 0.0 for e in with_nll)
        pooled = perplexity_from_nll(nll, sum(e.answer_tokens for e in with_nll))
        if pooled is not None:
            overall["perplexity"] = pooled
    return overall
