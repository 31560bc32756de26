"""Answer-first pairs with round-trip checks (Alberti et al., 2019), for generators too small to write pairs.

The answer is a span of the chunk (promptly/qa/spans.py); the generator writes only a question for it,
and the reply is read as one line ending in "?" (anything else is `malformed`). A pair is kept only if
the round trip holds:

- the answer is in the chunk word for word (`not_verbatim`: a span that no longer matches its chunk);
- the question does not give the answer away: it does not contain the whole answer, nor every key of
  it (the numbers, code spans or cells the answer tells) (`answer_in_question`);
- the question is new for its document (`duplicate`);
- the question is about its answer: it shares a content word with the span (or a table row's header),
  and an extractive reader answering it from the chunk picks the span back: the span is among the
  `answer_rank` sentences and rows of the chunk closest to the question by the embedder
  (`answer_mismatch`: "What is the answer to this question?", or a vague question that another
  sentence of the chunk answers as well);
- retrieval, as serving does it (the store's search with the embedder), finds the source chunk, or
  another chunk holding the same span (chunks overlap), in the top k (`not_retrieved`).

With `retry_prompts` (none by default), a span whose question fails is asked again with the next of them
(e.g. a worked example first); every rejected reply is counted by its reason.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from promptly.qa.config import AnswerFirstConfig
from promptly.qa.spans import AnswerSpan, chunk_units, collapse, in_chunk
from promptly.qa.validation import Candidate, PairValidator, normalize_question
from promptly.records import Chunk, QAPair, Split
from promptly.retrieval import Retriever
from promptly.store.base import ChunkStore
from promptly.utils import text as text_rules

_LEAD = re.compile(r"^(?:\*\*)?(?:question|q)\s*\d*\s*[:.)-]\s*(?:\*\*)?\s*|^\d{1,2}[.)]\s+", re.IGNORECASE)
_QUOTES = "\"'`*“”‘’ "


def parse_question(reply: str, max_chars: int) -> str | None:
    """The question in a reply: its first non-empty line, a "Question:" label and quotes dropped, cut
    after the first "?". None (malformed) when there is no "?" or the question runs past `max_chars`."""
    for line in reply.strip().splitlines():
        line = _LEAD.sub("", line.strip()).strip(_QUOTES)
        if not line:
            continue
        if "?" not in line:
            return None
        question = collapse(line[: line.index("?") + 1].strip(_QUOTES))
        return question if len(question) <= max_chars else None
    return None


def gives_away(question: str, span: AnswerSpan) -> bool:
    """Whether the question already states its answer: the whole span, or every one of its keys."""
    q = collapse(question).lower()
    if collapse(span.text).lower().rstrip(".") in q:
        return True
    if not span.keys:
        return False
    words = text_rules.content_words(question)
    return all(key.lower() in q or text_rules.normalize(key) in words for key in span.keys)


def shares_words(question: str, span: AnswerSpan) -> bool:
    """Whether the question and its answer (with a row's header) have a content word in common."""
    return bool(text_rules.content_words(question) & text_rules.content_words(f"{span.text} {span.header}"))


class RoundTrip:
    """Retrieval as serving does it: a question must find the chunk its answer came from."""

    def __init__(self, store: ChunkStore, encoder: Any, cfg: AnswerFirstConfig) -> None:
        self.retriever = Retriever(store, encoder, k=cfg.retrieval_k, mode=cfg.retrieval_mode)
        self.encoder, self.answer_rank = encoder, cfg.answer_rank

    def answered(self, chunk: Chunk, spans: Sequence[AnswerSpan], questions: Sequence[str]) -> list[bool]:
        """For each question: is its span among the chunk units an extractive reader would answer with?"""
        if not questions:
            return []
        units = chunk_units(chunk.content)
        q = _unit_rows(self.encoder.embed_queries(list(questions)))
        u = _unit_rows(self.encoder.embed_documents(units))
        scores = q @ u.T
        out = []
        for span, row in zip(spans, scores, strict=True):
            top = np.argsort(-row, kind="stable")[: self.answer_rank]
            out.append(any(units[i] == span.text for i in top))
        return out

    def found(self, chunk: Chunk, spans: Sequence[AnswerSpan], questions: Sequence[str]) -> list[bool]:
        """For each question: is its source chunk (or a chunk holding its span) in the top k?"""
        if not questions:
            return []
        results = self.retriever.search(list(questions))
        return [any(hit["chunk_id"] == chunk.id or in_chunk(span.text, hit["content"]) for hit in hits)
                for span, hits in zip(spans, results, strict=True)]


def _unit_rows(vectors: Any) -> np.ndarray:
    rows = np.asarray(vectors, dtype=np.float32)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def _failed_check(question: str, span: AnswerSpan, chunk: Chunk, validator: PairValidator,
                  asked: set[str]) -> str | None:
    """The first check (before the round trip) a question fails, as its rejection reason."""
    if validator.is_empty(Candidate(question, span.text)):
        return "empty"
    if not in_chunk(span.text, chunk.content):
        return "not_verbatim"
    if gives_away(question, span):
        return "answer_in_question"
    if not shares_words(question, span):
        return "answer_mismatch"
    if normalize_question(question) in asked or validator.is_duplicate(chunk.document_id, question):
        return "duplicate"
    return None


def validate_questions(replies: Sequence[tuple[AnswerSpan, str]], chunk: Chunk, split: Split,
                       cfg: AnswerFirstConfig, validator: PairValidator, round_trip: RoundTrip,
                       rejected: Counter[str]) -> tuple[list[QAPair], list[AnswerSpan]]:
    """The pairs of one chunk's replies that pass every check (each rejection counted by its reason),
    and the spans whose question failed a check another question may pass (all but `not_verbatim`)."""
    kept: list[tuple[AnswerSpan, str]] = []
    retry: list[AnswerSpan] = []
    asked: set[str] = set()
    for span, reply in replies:
        question = parse_question(reply, cfg.max_question_chars)
        reason = "malformed" if question is None else _failed_check(question, span, chunk, validator, asked)
        if reason is not None:
            rejected[reason] += 1
            if reason != "not_verbatim":  # a span no longer in its chunk: no question can mend it
                retry.append(span)
        elif question is not None:
            asked.add(normalize_question(question))
            kept.append((span, question))
    spans, questions = [s for s, _ in kept], [q for _, q in kept]
    answered = round_trip.answered(chunk, spans, questions)
    found = round_trip.found(chunk, spans, questions)
    out = []
    for (span, question), picked, ok in zip(kept, answered, found, strict=True):
        if not (picked and ok):
            rejected["not_retrieved" if picked else "answer_mismatch"] += 1
            retry.append(span)
            continue
        validator.remember(chunk.document_id, question)
        out.append(QAPair(question=question, answer=span.text, document_id=chunk.document_id, split=split,
                          chunk_ids=(chunk.id,), origin="generated").with_id())
    return out, retry
