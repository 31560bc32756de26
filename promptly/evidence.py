"""Evidence for an answer: the source sentences it rests on, inline markers, quoting, abstention.

An answer from a small model may paraphrase its sources badly or invent; evidence lets a reader check it.
Every retrieved chunk is split into sentences that are verbatim slices of the chunk (offsets kept), each
sentence is scored by how well it *supports* a text (the question, or one sentence of the answer):

    support(x, s) = sqrt(max(0, cos(E_query(x), E_doc(s))) * bm25_coverage(x, s))       in [0, 1]

`bm25_coverage` is BM25 over the few candidate sentences, divided by the score a sentence holding every
term of x once would get, so it reads "how much of x, weighted by rarity, the sentence states" and can be
compared against a fixed threshold, which plain BM25 cannot. The geometric mean needs both: MiniLM gives
any sentence on the same product a high cosine (alone it told answerable from unanswerable questions
at AUC 0.55 on the tuning set), and a shared rare word alone is not an answer either (benchmarks/README.md).
Then:

- generative: an answer sentence gets the marker [n] of the source sentence that supports it best, when
  that support reaches `marker_threshold`; those source sentences are the answer's evidence;
- extractive: the answer is the best question-supporting sentences, quoted, each with its marker;
- abstention: when no sentence supports the question by `abstain_below`, the answer says the sources do
  not say (and, in the answer path, nothing is generated).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from promptly.records import Evidence
from promptly.retrieval import ContextChunk
from promptly.settings import AnswerStyle, EvidenceSettings
from promptly.utils import text as textlib

ABSTENTION = "The sources do not say"
"""How an abstaining answer starts (evaluation counts answers that start so as abstentions)."""

_FENCE = re.compile(r"^\s*(```|~~~)")
_LINE_MARKER = re.compile(r"^\s*(?:[-*+•]\s+|\d{1,3}[.)]\s+|#{1,6}\s+|>\s*)")
_HEADING = re.compile(r"^\s*#{1,6}\s")
_TABLE_RULE = re.compile(r"^\s*\|?[\s:|-]+\|?\s*$")
_MARKER = re.compile(r"\s*\[\d+\](?:\s*\[\d+\])*")
_ABBREVIATIONS = frozenset({"e.g", "i.e", "etc", "vs", "cf", "approx", "mr", "mrs", "ms", "dr", "no", "fig",
                            "sec"})


class SentenceEncoder(Protocol):
    """What evidence needs from the embedder (`promptly.ingest.embedding.Embedder` is one)."""

    def embed_queries(self, texts: list[str]) -> Any: ...

    def embed_documents(self, texts: list[str]) -> Any: ...


# -- sentences that are verbatim slices of a chunk -----------------------------------------------------------


def sentence_spans(content: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of a chunk: `content[start:end]` is the sentence, verbatim.

    Paragraphs (hard-wrapped lines joined) end at blank lines, list items, headings and table rows; a code
    line or table row is a unit of its own; inside a paragraph a sentence ends at . ! ? followed by
    whitespace, except after a common abbreviation or an initial. Headings (they name a topic, they state
    nothing), fence lines and table rules are left out.
    """
    units: list[tuple[int, int]] = []
    start: int | None = None
    end = 0
    in_code = False
    offset = 0
    for line in content.splitlines(keepends=True):
        bare = line.rstrip("\r\n")
        line_start, line_end = offset, offset + len(bare)
        offset += len(line)
        stripped = bare.strip()
        fence = bool(_FENCE.match(bare))
        item = bool(_LINE_MARKER.match(bare)) or stripped.startswith("|")
        if (not stripped or fence or item or in_code) and start is not None:
            units.append((start, end))
            start = None
        if fence:
            in_code = not in_code
            continue
        if not stripped or (_TABLE_RULE.match(bare) and "-" in bare) or (_HEADING.match(bare) and not in_code):
            continue
        marker = _LINE_MARKER.match(bare)
        text_start = line_start + (marker.end() if marker else len(bare) - len(bare.lstrip()))
        if in_code or stripped.startswith("|"):
            units.append((text_start, line_end))
            continue
        if start is None:
            start = text_start
        end = line_end
    if start is not None:
        units.append((start, end))
    spans: list[tuple[int, int]] = []
    for u_start, u_end in units:
        spans.extend(_split_unit(content, u_start, u_end))
    return [(s, e) for s, e in spans if sum(ch.isalnum() for ch in content[s:e]) >= 3]


def _split_unit(content: str, start: int, end: int) -> list[tuple[int, int]]:
    unit = content[start:end]
    out, begin = [], 0
    for match in re.finditer(r"[.!?]+[\"')\]`*]*\s+", unit):
        before = unit[begin : match.start()].rsplit(None, 1)
        last = before[-1].lower().strip("(\"'") if before else ""
        if unit[match.start()] == "." and (last in _ABBREVIATIONS or (len(last) == 1 and before[-1].isupper())):
            continue
        out.append((begin, match.end()))
        begin = match.end()
    out.append((begin, len(unit)))
    spans = []
    for s, e in out:
        piece = unit[s:e]
        s += len(piece) - len(piece.lstrip())
        e -= len(piece) - len(piece.rstrip())
        if e > s:
            spans.append((start + s, start + e))
    return spans


@dataclass(frozen=True)
class Candidate:
    """One sentence of one cited chunk."""

    number: int
    """The chunk's citation number ([n])."""
    chunk: ContextChunk
    start: int
    end: int

    @property
    def text(self) -> str:
        return str(self.chunk["content"])[self.start : self.end]


def candidates(chunks: Sequence[ContextChunk]) -> list[Candidate]:
    """Every sentence of the chunks, numbered as the prompt numbers the chunks (from 1)."""
    return [Candidate(n, c, s, e) for n, c in enumerate(chunks, start=1) for s, e in sentence_spans(str(c["content"]))]


def display(sentence: str) -> str:
    """A sentence on one line (hard wraps and runs of spaces collapsed) for quoting."""
    return " ".join(sentence.split())


# -- support ----------------------------------------------------------------------------------------------


def _terms(text: str) -> list[str]:
    return [textlib.normalize(t) for t in textlib.tokens(text) if t.lower() not in textlib.STOPWORDS]


class SmallBM25:
    """BM25 (k1=1.2, b=0.75) over a handful of sentences, with a coverage in [0, 1] for thresholds."""

    def __init__(self, documents: Sequence[str], k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.docs = [Counter(_terms(d)) for d in documents]
        self.lengths = [sum(d.values()) for d in self.docs]
        self.avg = (sum(self.lengths) / len(self.lengths)) if self.docs and sum(self.lengths) else 1.0
        self.df = Counter(t for d in self.docs for t in d)

    def idf(self, term: str) -> float:
        n = len(self.docs)
        return math.log(1 + (n - self.df.get(term, 0) + 0.5) / (self.df.get(term, 0) + 0.5))

    def coverage(self, query: str) -> np.ndarray:
        """Each sentence's BM25 score of `query` over the score of an average-length sentence holding each
        query term once (capped at 1): the rarity-weighted share of the query the sentence states."""
        terms = list(dict.fromkeys(_terms(query)))
        if not terms or not self.docs:
            return np.zeros(len(self.docs), dtype=np.float32)
        ideal = sum(self.idf(t) for t in terms)
        out = np.zeros(len(self.docs), dtype=np.float32)
        for i, (doc, length) in enumerate(zip(self.docs, self.lengths, strict=True)):
            norm = self.k1 * (1 - self.b + self.b * length / self.avg)
            score = sum(self.idf(t) * doc[t] * (self.k1 + 1) / (doc[t] + norm) for t in terms if t in doc)
            out[i] = min(1.0, score / ideal) if ideal > 0 else 0.0
        return out


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)


def support_matrix(texts: Sequence[str], sentences: Sequence[str], encoder: SentenceEncoder) -> np.ndarray:
    """support(text_i, sentence_j) for every pair: the geometric mean of the embedder's cosine (floored at 0)
    and the BM25 coverage (module docstring)."""
    if not texts or not sentences:
        return np.zeros((len(texts), len(sentences)), dtype=np.float32)
    queries = _unit(np.asarray(encoder.embed_queries(list(texts)), dtype=np.float32))
    docs = _unit(np.asarray(encoder.embed_documents([display(s) for s in sentences]), dtype=np.float32))
    cosine = np.clip(queries @ docs.T, 0.0, 1.0)
    bm25 = SmallBM25(sentences)
    lexical = np.stack([bm25.coverage(t) for t in texts])
    return np.asarray(np.sqrt(cosine * lexical), dtype=np.float32)


# -- answers with evidence -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvidencePlan:
    """What the question's sources support, before any generation: whether to abstain, the best sentences."""

    candidates: tuple[Candidate, ...]
    question_support: tuple[float, ...]
    """support(question, candidate) per candidate."""
    best_support: float
    abstain: bool


def plan(question: str, chunks: Sequence[ContextChunk], encoder: SentenceEncoder,
         settings: EvidenceSettings) -> EvidencePlan:
    """Score every sentence of the chunks against the question; abstain when none reaches the threshold."""
    cands = tuple(candidates(chunks))
    scores = support_matrix([question], [c.text for c in cands], encoder)
    row = tuple(float(x) for x in scores[0]) if cands else ()
    best = max(row, default=0.0)
    return EvidencePlan(cands, row, best, abstain=best < settings.abstain_below)


def _evidence(cand: Candidate, score: float, answer_sentence: int | None) -> Evidence:
    return Evidence(number=cand.number, chunk_id=str(cand.chunk["chunk_id"]),
                    document_id=str(cand.chunk["document_id"]), sentence=cand.text, start=cand.start,
                    end=cand.end, support=round(score, 4), answer_sentence=answer_sentence)


@dataclass(frozen=True)
class EvidencedAnswer:
    """An answer's text with its markers, and what it rests on."""

    text: str
    evidence: tuple[Evidence, ...]
    abstained: bool
    style: str
    support: float
    """The best support of the question by any retrieved sentence (what abstention compares)."""


def abstention(question: str, p: EvidencePlan, style: str) -> EvidencedAnswer:
    return EvidencedAnswer(f"{ABSTENTION} (no retrieved sentence answers the question).", (), True, style,
                           round(p.best_support, 4))


def extractive(question: str, p: EvidencePlan, settings: EvidenceSettings) -> EvidencedAnswer:
    """The best question-supporting sentences, quoted in source order of their score, each with its marker."""
    if p.abstain:
        return abstention(question, p, AnswerStyle.extractive.value)
    order = sorted(range(len(p.candidates)), key=lambda i: -p.question_support[i])
    chosen: list[int] = []
    seen: set[str] = set()
    for i in order:
        key = display(p.candidates[i].text).lower()
        if key in seen:  # overlapping chunks repeat sentences
            continue
        if chosen and p.question_support[i] < settings.abstain_below:
            break
        chosen.append(i)
        seen.add(key)
        if len(chosen) >= settings.max_sentences:
            break
    evidence = tuple(_evidence(p.candidates[i], p.question_support[i], n) for n, i in enumerate(chosen))
    text = " ".join(f'"{display(e.sentence)}" [{e.number}]' for e in evidence)
    return EvidencedAnswer(text, evidence, False, AnswerStyle.extractive.value, round(p.best_support, 4))


def answer_sentences(answer: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of a generated answer (markers go at their ends)."""
    return sentence_spans(answer)


def generative(question: str, answer: str, p: EvidencePlan, encoder: SentenceEncoder,
               settings: EvidenceSettings) -> EvidencedAnswer:
    """The model's answer with [n] after each sentence a source sentence supports; that sentence is its
    evidence (ranked by support of the answer sentence and of the question together). When no answer
    sentence is supported, the best question-supporting sentence is still shown, without a marker."""
    style = AnswerStyle.generative.value
    if p.abstain:
        return abstention(question, p, style)
    answer = _MARKER.sub("", answer).strip()  # the model's own [n] are not evidence: ours replace them
    spans = answer_sentences(answer)
    pieces = [answer[s:e] for s, e in spans]
    evidence: list[Evidence] = []
    markers: dict[int, int] = {}
    if pieces and p.candidates:
        support = support_matrix(pieces, [c.text for c in p.candidates], encoder)
        by_question = np.asarray(p.question_support, dtype=np.float32)
        for i in range(len(pieces)):
            j = int(np.argmax(support[i] + by_question))
            if support[i, j] >= settings.marker_threshold:
                markers[i] = p.candidates[j].number
                if all(e.chunk_id != p.candidates[j].chunk["chunk_id"] or e.start != p.candidates[j].start
                       for e in evidence):
                    evidence.append(_evidence(p.candidates[j], float(support[i, j]), i))
    if not evidence and p.candidates:
        j = int(np.argmax(p.question_support))
        evidence.append(_evidence(p.candidates[j], p.question_support[j], None))
    text = answer
    for i in sorted(markers, reverse=True):  # from the end, so earlier offsets hold
        end = spans[i][1]
        text = f"{text[:end]} [{markers[i]}]{text[end:]}"
    return EvidencedAnswer(text, tuple(evidence[: max(settings.max_sentences, len(markers))]), False, style,
                           round(p.best_support, 4))


def strip_markers(text: str) -> str:
    """The answer without its [n] markers (for metrics that compare words)."""
    return _MARKER.sub("", text).strip()


def is_abstention(text: str) -> bool:
    return text.strip().startswith(ABSTENTION)
