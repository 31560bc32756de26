"""RAG metrics: answer relevance, coverage, faithfulness and retrieval quality (docs/metrics.md).

Each metric is a batch function returning one small record per example (the score and why), and a
torchmetrics `Metric` around it whose states (sums, counts, per-example values) reduce across processes.
Every score is in [0, 1]; an empty answer scores 0; a score that is undefined (no reference, no gold
chunks) is None and is left out of means.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from promptly.utils import text

Judge = Callable[[str], str]

QUESTIONS_PROMPT = (
    "Write {n} different questions that the following answer responds to. Put one question per line "
    "and write nothing else.\n\nAnswer: {answer}\n\nQuestions:"
)
_NONCOMMITTAL = re.compile(
    r"\b(i don't know|i do not know|not sure|cannot answer|can't answer|no information)\b", re.I
)
_LINE_PREFIX = re.compile(r"^\s*(?:[-*•]|\d+[.)]|q\d*[:.)]|question\s*\d*[:.)])\s*", re.I)


class TextEncoder(Protocol):
    """What the metrics need from an embedder (`promptly.ingest.embedding.Embedder` is one)."""

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...


class CachedEncoder:
    """Memoises vectors, so a sentence several metrics need is embedded once, in one batch per call."""

    def __init__(self, encoder: TextEncoder) -> None:
        self.encoder = encoder
        self._cache: dict[tuple[str, str], np.ndarray] = {}

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._get("q", texts)

    def documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._get("d", texts)

    def _get(self, kind: str, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if (kind, t) not in self._cache))
        if missing:
            embed = self.encoder.embed_queries if kind == "q" else self.encoder.embed_documents
            for t, v in zip(missing, embed(missing), strict=True):
                self._cache[(kind, t)] = np.asarray(v, dtype=np.float32)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._cache[(kind, t)] for t in texts])

    @cached_property
    def vocabulary(self) -> frozenset[str] | None:
        """Whole words of the encoder's tokenizer vocabulary, used to spot rare words; None if unknown."""
        tokenizer = getattr(self.encoder, "hf_tokenizer", None)
        vocab = tokenizer.get_vocab() if tokenizer is not None and hasattr(tokenizer, "get_vocab") else None
        return frozenset(w for w in vocab if w.isalpha()) if vocab else None


def _encoder(encoder: TextEncoder | CachedEncoder) -> CachedEncoder:
    return encoder if isinstance(encoder, CachedEncoder) else CachedEncoder(encoder)


def _unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, so cosines are right whether or not the encoder normalises."""
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def _max_cosine(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Max cosine of each row against all columns."""
    if rows.size == 0 or cols.size == 0:
        return np.zeros(len(rows), dtype=np.float32)
    return np.asarray((_unit(rows) @ _unit(cols).T).max(axis=1))


# -- answer relevance -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RelevanceScore:
    """cosine(question, answer); `judged` is the RAGAS-style score when a judge is configured."""

    cosine: float
    judged: float | None = None
    generated_questions: tuple[str, ...] = ()


def parse_questions(output: str, n: int) -> list[str]:
    """The first `n` non-empty lines of a judge's output, list markers ("1.", "-", "Q:") removed."""
    lines = (_LINE_PREFIX.sub("", line).strip() for line in output.splitlines())
    return [line for line in lines if line][:n]


def answer_relevance(
    questions: Sequence[str], answers: Sequence[str], encoder: TextEncoder | CachedEncoder,
    judge: Judge | None = None, n_questions: int = 3,
) -> list[RelevanceScore]:
    """How well each answer addresses its question.

    `cosine`: max(0, cos(E_query(question), E_doc(answer))). `judged` (RAGAS answer relevancy): the judge
    writes `n_questions` questions the answer would respond to; the score is the mean max(0, cosine)
    between them and the real question, and 0 for a noncommittal answer ("I don't know").
    Limits: topical closeness, not correctness (a wrong answer on topic scores high); very short
    answers embed poorly; the judged score is only as good as the judge.
    """
    enc = _encoder(encoder)
    live = [i for i, a in enumerate(answers) if a.strip()]
    cos = np.zeros(len(answers), dtype=np.float32)
    if live:
        q = enc.queries([questions[i] for i in live])
        a = enc.documents([answers[i] for i in live])
        cos[live] = np.clip((_unit(q) * _unit(a)).sum(axis=1), 0.0, 1.0)
    out: list[RelevanceScore] = []
    for i, (question, answer) in enumerate(zip(questions, answers, strict=True)):
        if judge is None:
            out.append(RelevanceScore(cosine=float(cos[i])))
            continue
        generated: list[str] = []
        judged = 0.0
        if answer.strip() and not _NONCOMMITTAL.search(answer):
            prompt = QUESTIONS_PROMPT.format(n=n_questions, answer=answer)
            generated = parse_questions(judge(prompt), n_questions)
        if generated:
            sims = _unit(enc.documents(generated)) @ _unit(enc.queries([question])[0])
            judged = float(np.clip(sims, 0.0, 1.0).mean())
        out.append(RelevanceScore(cosine=float(cos[i]), judged=judged, generated_questions=tuple(generated)))
    return out


# -- coverage ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CoverageScore:
    """Share of the reference covered: by meaning (`semantic`), by words (`lexical`), and their mean."""

    semantic: float | None
    lexical: float | None
    combined: float | None
    missing_words: tuple[str, ...] = ()


def coverage(
    references: Sequence[str], answers: Sequence[str], encoder: TextEncoder | CachedEncoder,
    threshold: float = 0.6,
) -> list[CoverageScore]:
    """How much of each reference answer the answer covers.

    semantic = |{reference sentences r : max_s cos(r, s) >= threshold}| / |reference sentences|, s over
    the answer's sentences; lexical = |content(ref) ∩ content(answer)| / |content(ref)| (stemmed
    non-stopword tokens); combined = (semantic + lexical) / 2. None when the reference is empty.
    Limits: semantic matching is blind to a wrong number, lexical matching to synonyms and negation;
    extra content in the answer is not penalised.
    """
    enc = _encoder(encoder)
    out: list[CoverageScore] = []
    for reference, answer in zip(references, answers, strict=True):
        ref_sents = text.split_sentences(reference)
        ref_words = text.content_words(reference)
        if not ref_sents or not ref_words:
            out.append(CoverageScore(None, None, None))
            continue
        ans_sents = text.split_sentences(answer)
        if not ans_sents:
            out.append(CoverageScore(0.0, 0.0, 0.0, tuple(sorted(ref_words))))
            continue
        sims = _max_cosine(enc.documents(ref_sents), enc.documents(ans_sents))
        semantic = float((sims >= threshold).mean())
        missing = ref_words - text.content_words(answer)
        lexical = 1.0 - len(missing) / len(ref_words)
        out.append(CoverageScore(semantic, lexical, (semantic + lexical) / 2, tuple(sorted(missing))))
    return out


# -- faithfulness -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaithfulnessScore:
    """Share of answer sentences supported by the context, and the evidence against the others."""

    score: float
    sentences: int
    supported: int
    unsupported: tuple[str, ...] = ()
    invented_tokens: tuple[str, ...] = ()


def faithfulness(
    answers: Sequence[str], contexts: Sequence[Sequence[str]], encoder: TextEncoder | CachedEncoder,
    threshold: float = 0.5, rare_words: bool = True, check_negation: bool = True,
) -> list[FaithfulnessScore]:
    """The share of each answer's sentences that the retrieved context supports.

    A sentence is supported when (1) its max cosine to the context's units (chunks, sentences and
    adjacent sentence pairs) is >= threshold, (2) each of its critical tokens (numbers, flags,
    identifiers, and with `rare_words` words outside the encoder's vocabulary) occurs in the context,
    and (3) with `check_negation`, it is negated exactly when its closest context sentence is.
    Limits: a heuristic, not entailment: a contradiction that invents no token and keeps polarity
    passes; "five" does not match "5"; an acronym or rare synonym absent from the context fails.
    """
    enc = _encoder(encoder)
    vocabulary = enc.vocabulary if rare_words else None
    out: list[FaithfulnessScore] = []
    for answer, chunks in zip(answers, contexts, strict=True):
        sentences = text.split_sentences(answer)
        chunks = [c for c in chunks if c.strip()]
        if not sentences or not chunks:
            out.append(FaithfulnessScore(0.0, len(sentences), 0, tuple(sentences)))
            continue
        ctx_sents = [s for c in chunks for s in text.split_sentences(c)]
        pairs = [f"{a} {b}" for a, b in itertools.pairwise(ctx_sents)]
        ctx_tokens = set().union(*(text.context_tokens(c) for c in chunks))
        ans_vecs = enc.documents(sentences)
        unit_sims = _max_cosine(ans_vecs, enc.documents([*chunks, *ctx_sents, *pairs]))
        nearest = _nearest(ans_vecs, enc.documents(ctx_sents)) if ctx_sents else [None] * len(sentences)
        unsupported: list[str] = []
        invented: set[str] = set()
        for sentence, sim, near in zip(sentences, unit_sims, nearest, strict=True):
            new = text.critical_tokens(sentence, vocabulary) - ctx_tokens
            flipped = check_negation and near is not None and (
                text.is_negated(sentence) != text.is_negated(ctx_sents[near])
            )
            invented |= new
            if sim < threshold or new or flipped:
                unsupported.append(sentence)
        supported = len(sentences) - len(unsupported)
        out.append(FaithfulnessScore(supported / len(sentences), len(sentences), supported,
                                     tuple(unsupported), tuple(sorted(invented))))
    return out


def _nearest(rows: np.ndarray, cols: np.ndarray) -> list[int | None]:
    return [int(j) for j in (_unit(rows) @ _unit(cols).T).argmax(axis=1)]


# -- retrieval --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrievalScore:
    """recall@k for each k and the reciprocal rank of the first gold chunk; None without gold chunks."""

    recall: Mapping[int, float | None]
    reciprocal_rank: float | None


def retrieval(
    retrieved: Sequence[Sequence[str]], gold: Sequence[Sequence[str]], ks: Sequence[int] = (1, 3, 5),
) -> list[RetrievalScore]:
    """recall@k = |gold ∩ top-k retrieved| / |gold|; RR = 1 / rank of the first gold chunk (0 if none).

    MRR is the mean RR over examples. Duplicate retrieved ids count once, at their first rank.
    Limits: undefined without gold ids; another chunk holding the same fact counts as a miss.
    """
    out: list[RetrievalScore] = []
    for got, want in zip(retrieved, gold, strict=True):
        gold_set = set(want)
        if not gold_set:
            out.append(RetrievalScore({k: None for k in ks}, None))
            continue
        ranked = list(dict.fromkeys(got))
        recall = {k: len(gold_set.intersection(ranked[:k])) / len(gold_set) for k in ks}
        rank = next((i + 1 for i, cid in enumerate(ranked) if cid in gold_set), None)
        out.append(RetrievalScore(recall, 1.0 / rank if rank else 0.0))
    return out


# -- torchmetrics wrappers --------------------------------------------------------------------------


class MeanScore(Metric):
    """Mean of per-example scores in [0, 1], skipping undefined (None) ones; distributed-safe.

    States: `total` and `count` (summed across processes) give the mean; `values` (concatenated)
    keeps every defined per-example score for distributions.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    total: Tensor
    count: Tensor
    values: list[Tensor]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("values", default=[], dist_reduce_fx="cat")

    def _add(self, scores: Collection[float | None]) -> None:
        defined = [s for s in scores if s is not None]
        if defined:
            batch = torch.tensor(defined, dtype=torch.float64, device=self.total.device)
            self.total += batch.sum()
            self.count += len(defined)
            self.values.append(batch)

    def compute(self) -> Tensor:
        """The mean; NaN when no example had a defined score."""
        if int(self.count) == 0:
            return torch.tensor(float("nan"), dtype=torch.float64)
        return self.total / self.count


class AnswerRelevance(MeanScore):
    """Mean answer relevance (cosine, or the judged RAGAS variant when a judge is given)."""

    def __init__(self, encoder: TextEncoder, judge: Judge | None = None, n_questions: int = 3,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.encoder, self.judge, self.n_questions = encoder, judge, n_questions

    def update(self, questions: Sequence[str], answers: Sequence[str]) -> None:
        scores = answer_relevance(questions, answers, self.encoder, self.judge, self.n_questions)
        self._add([s.judged if self.judge is not None else s.cosine for s in scores])


class AnswerCoverage(MeanScore):
    """Mean coverage of the reference answers; `part` picks combined, semantic or lexical."""

    def __init__(self, encoder: TextEncoder, threshold: float = 0.6, part: str = "combined",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if part not in ("combined", "semantic", "lexical"):
            raise ValueError(f"part must be combined, semantic or lexical, not {part!r}")
        self.encoder, self.threshold, self.part = encoder, threshold, part

    def update(self, references: Sequence[str], answers: Sequence[str]) -> None:
        scores = coverage(references, answers, self.encoder, self.threshold)
        self._add([getattr(s, self.part) for s in scores])


class Faithfulness(MeanScore):
    """Mean share of answer sentences supported by the retrieved context."""

    def __init__(self, encoder: TextEncoder, threshold: float = 0.5, rare_words: bool = True,
                 check_negation: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.encoder, self.threshold = encoder, threshold
        self.rare_words, self.check_negation = rare_words, check_negation

    def update(self, answers: Sequence[str], contexts: Sequence[Sequence[str]]) -> None:
        scores = faithfulness(answers, contexts, self.encoder, self.threshold, self.rare_words,
                              self.check_negation)
        self._add([s.score for s in scores])


class RetrievalRecall(MeanScore):
    """Mean recall@k of the gold chunks among the retrieved ones."""

    def __init__(self, k: int = 5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.k = k

    def update(self, retrieved: Sequence[Sequence[str]], gold: Sequence[Sequence[str]]) -> None:
        self._add([s.recall[self.k] for s in retrieval(retrieved, gold, (self.k,))])


class MeanReciprocalRank(MeanScore):
    """MRR: mean of 1 / rank of the first gold chunk (0 when none was retrieved)."""

    def update(self, retrieved: Sequence[Sequence[str]], gold: Sequence[Sequence[str]]) -> None:
        self._add([s.reciprocal_rank for s in retrieval(retrieved, gold)])
