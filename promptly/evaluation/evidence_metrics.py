"""Metrics of answers that show their evidence: key-fact recall, citation hit rate, abstention.

They need no reference prose: a question file (JSONL) lists, per question, the facts an answer must state
(`facts`, short strings such as "2.7.1" or "AES-256-GCM") and optionally the page that holds them
(`document_id`); a question with no facts is one the documents do not answer, and should be abstained on.

    {"question": "Which cipher does driftsync use?", "facts": ["AES-256-GCM"], "document_id": "driftsync/README.md"}
    {"question": "Who founded driftsync?", "facts": []}

When only a reference answer exists (the QA split), its *key terms* stand in for facts: the reference's
content words that the question does not already contain (the question's own words prove nothing).
A fact or term is found in a text when every one of its normalised tokens is among the text's
(promptly.utils.text: lowercase, Porter-stemmed words, identifiers whole, hyphen parts too).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from promptly.errors import ConfigError
from promptly.evidence import is_abstention, strip_markers
from promptly.records import Answer
from promptly.utils import text as textlib


@dataclass(frozen=True)
class FactQuestion:
    """A question with the facts its answer must state (none: the documents do not answer it)."""

    question: str
    facts: tuple[str, ...] = ()
    document_id: str | None = None
    """The page holding the facts, for the citation hit rate (None: not scored)."""

    @property
    def answerable(self) -> bool:
        return bool(self.facts)


def load_fact_questions(path: str | Path) -> list[FactQuestion]:
    """Read a question file (JSONL: question, facts, document_id); a bad line is an error naming it."""
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            facts = row.get("facts") or []
            if not isinstance(facts, list) or not str(row["question"]).strip():
                raise ValueError("`facts` must be a list and `question` non-empty")
        except (ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"{path}:{n}: not a question line ({err}): expected "
                              '{"question": ..., "facts": [...], "document_id": ...}') from None
        out.append(FactQuestion(str(row["question"]), tuple(str(f) for f in facts), row.get("document_id")))
    return out


def _found(term: str, tokens: set[str]) -> bool:
    parts = textlib.context_tokens(term)
    return bool(parts) and parts <= tokens


def fact_recall(text: str, facts: Sequence[str]) -> float | None:
    """Share of the facts stated in the text (None when there are none)."""
    if not facts:
        return None
    tokens = textlib.context_tokens(text)
    return sum(_found(f, tokens) for f in facts) / len(facts)


def key_terms(reference: str, question: str) -> list[str]:
    """The reference's content words the question does not contain: what an answer must add."""
    asked = textlib.context_tokens(question)
    terms = [t for t in textlib.tokens(reference) if t.lower() not in textlib.STOPWORDS]
    return list(dict.fromkeys(t for t in terms if textlib.normalize(t) not in asked))


def key_term_recall(text: str, reference: str, question: str) -> float | None:
    """Share of the reference's key terms (`key_terms`) in the text; None when the reference adds none."""
    return fact_recall(text, key_terms(reference, question))


def citation_hit(answer: Answer, document_id: str | None) -> float | None:
    """1 when the expected page is among the documents of the answer's evidence (its cited sentences), else 0;
    None when no page is expected."""
    if not document_id:
        return None
    return float(any(e.document_id == document_id for e in answer.evidence))


def retrieval_hit(answer: Answer, document_id: str | None) -> float | None:
    """1 when the expected page is among the answer's citations (what retrieval showed the model)."""
    if not document_id:
        return None
    return float(any(c.document_id == document_id for c in answer.citations))


def abstained(answer: Answer) -> bool:
    return answer.abstained or is_abstention(answer.text)


@dataclass(frozen=True)
class EvidenceScores:
    """One answer's evidence scores (None: undefined for this question)."""

    abstained: float
    fact_recall: float | None
    """Answer text against the facts (key terms)."""
    evidence_fact_recall: float | None
    """The supporting sentences together against the facts: does the evidence hold the answer?"""
    citation_hit: float | None
    retrieval_hit: float | None

    def as_dict(self) -> dict[str, float | None]:
        return {"abstained": self.abstained, "key_fact_recall": self.fact_recall,
                "evidence_fact_recall": self.evidence_fact_recall, "citation_hit": self.citation_hit,
                "retrieval_hit": self.retrieval_hit}


def score_answer(answer: Answer, facts: Sequence[str], document_id: str | None) -> EvidenceScores:
    """An answer against its facts. An abstention states no fact (recall 0 where facts are expected); the [n]
    markers are left out (a marker "[2]" must not count as the fact "2")."""
    gave_up = abstained(answer)
    evidence_text = " ".join(e.sentence for e in answer.evidence)
    return EvidenceScores(
        abstained=float(gave_up),
        fact_recall=None if not facts else (0.0 if gave_up else fact_recall(strip_markers(answer.text), facts)),
        evidence_fact_recall=None if not facts else fact_recall(evidence_text, facts),
        citation_hit=citation_hit(answer, document_id), retrieval_hit=retrieval_hit(answer, document_id))


def summarize(scores: Sequence[EvidenceScores], answerable: Sequence[bool]) -> dict[str, float]:
    """Means over the defined values, plus abstention split by whether the question is answerable:
    `abstention_rate` on unanswerable questions (higher is better) and `false_abstention_rate` on answerable
    ones (lower is better)."""
    out: dict[str, float] = {}
    for key in ("key_fact_recall", "evidence_fact_recall", "citation_hit", "retrieval_hit"):
        values = [v for s in scores if (v := s.as_dict()[key]) is not None]
        if values:
            out[key] = sum(values) / len(values)
    unanswerable = [s.abstained for s, a in zip(scores, answerable, strict=True) if not a]
    answerable_ = [s.abstained for s, a in zip(scores, answerable, strict=True) if a]
    if unanswerable:
        out["abstention_rate"] = sum(unanswerable) / len(unanswerable)
    if answerable_:
        out["false_abstention_rate"] = sum(answerable_) / len(answerable_)
    return out
