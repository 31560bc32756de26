"""Every generated pair is checked before it is stored: well-formed, non-empty, new, and grounded.

A generator's reply is JSON (`{"pairs": [{"question": ..., "answer": ...}]}`, or the bare list) checked
with a JSON schema; each pair must then have a non-empty question and answer, a question not already
asked of its document (normalised text), and an answer its chunk supports: the RAG faithfulness metric
(promptly/evaluation/rag_metrics.py: every answer sentence close to the chunk by embedding, with its
numbers, flags and rare words present) plus a share of the answer's content words found in the chunk.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from promptly.evaluation.rag_metrics import CachedEncoder, TextEncoder, faithfulness
from promptly.qa.config import ValidationConfig
from promptly.utils import text as text_rules

REASONS = ("malformed", "empty", "surplus", "duplicate", "ungrounded", "not_verbatim", "answer_in_question",
           "answer_mismatch", "not_retrieved", "generator_error")
"""Why a pair (or, for `malformed` replies and `generator_error`, a whole request) was rejected; the
answer-first checks (promptly/qa/answer_first.py) give `not_verbatim`, `answer_in_question`,
`answer_mismatch` and `not_retrieved`, the full-pair ones `surplus` and `ungrounded`."""

REPLY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["pairs"],
    "properties": {"pairs": {"type": "array"}},
}
PAIR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["question", "answer"],
    "properties": {
        "question": {"type": "string", "maxLength": 1000},
        "answer": {"type": "string", "maxLength": 4000},
    },
}
_FENCE = re.compile(r"^\s*```(?:json)?\s*|\s*```\s*$", re.IGNORECASE)
_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")


@dataclass(frozen=True)
class Candidate:
    """A pair as the generator wrote it, before any check."""

    question: str
    answer: str


@dataclass
class ParsedReply:
    """The well-formed pairs of one reply and how many items were malformed (a broken reply counts 1)."""

    pairs: list[Candidate] = field(default_factory=list)
    malformed: int = 0


def normalize_question(text: str) -> str:
    """Lower case, no punctuation, single spaces: "What port?" and "what  port" are one question."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def _load_json(reply: str) -> Any:
    """The first JSON value in a reply, code fences and chatter before it tolerated."""
    body = _FENCE.sub("", reply.strip())
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        starts = [i for i in (body.find("{"), body.find("[")) if i >= 0]
        if not starts:
            raise
        value, _ = json.JSONDecoder().raw_decode(body[min(starts):])
        return value


def parse_reply(reply: str) -> ParsedReply:
    """Pairs from a reply; a reply that is not JSON or not of the schema is one malformed item."""
    try:
        data = _load_json(reply)
    except (json.JSONDecodeError, ValueError):
        return ParsedReply(malformed=1)
    if isinstance(data, list):
        data = {"pairs": data}
    if not _valid(data, REPLY_SCHEMA):
        return ParsedReply(malformed=1)
    out = ParsedReply()
    for item in data["pairs"]:
        if _valid(item, PAIR_SCHEMA):
            out.pairs.append(Candidate(item["question"].strip(), item["answer"].strip()))
        else:
            out.malformed += 1
    return out


def _valid(value: Any, schema: dict[str, Any]) -> bool:
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError:
        return False
    return True


@dataclass(frozen=True)
class Grounding:
    """Why an answer is (or is not) grounded: the faithfulness score and the content-word overlap."""

    faithfulness: float
    overlap: float
    grounded: bool


class PairValidator:
    """Checks candidates against their chunk; remembers accepted questions per document for duplicates."""

    def __init__(self, encoder: TextEncoder, cfg: ValidationConfig | None = None) -> None:
        self.cfg = cfg or ValidationConfig()
        self.encoder = CachedEncoder(encoder)
        self._seen: dict[str, set[str]] = {}

    def remember(self, document_id: str, question: str) -> None:
        """Mark a question as asked of a document (stored earlier, or accepted now)."""
        self._seen.setdefault(document_id, set()).add(normalize_question(question))

    def is_duplicate(self, document_id: str, question: str) -> bool:
        return normalize_question(question) in self._seen.get(document_id, set())

    def is_empty(self, candidate: Candidate) -> bool:
        question_ok = len(candidate.question) >= self.cfg.min_question_chars and any(
            c.isalnum() for c in candidate.question)
        answer_ok = len(candidate.answer) >= self.cfg.min_answer_chars and any(c.isalnum() for c in candidate.answer)
        return not (question_ok and answer_ok)

    def grounding(self, answers: Sequence[str], context: str, heading: str = "") -> list[Grounding]:
        """Each answer's support in the chunk text (one batch of embeddings for the whole reply).

        `heading` (the document's title, section and id) counts as context too: the prompt shows it, and
        answers name the product ("breezeweb 3.0 removed ...") that a chunk's own text rarely repeats.
        """
        units = [context, heading] if heading.strip() else [context]
        scores = faithfulness(list(answers), [units] * len(answers), self.encoder,
                              threshold=self.cfg.sentence_similarity)
        context_words = text_rules.content_words("\n".join(units))
        out = []
        for answer, score in zip(answers, scores, strict=True):
            words = text_rules.content_words(answer)
            overlap = len(words & context_words) / len(words) if words else 0.0
            grounded = score.score >= self.cfg.min_faithfulness and overlap >= self.cfg.min_content_overlap
            out.append(Grounding(score.score, overlap, grounded))
        return out
