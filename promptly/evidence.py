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
A sentence is scored as a reader sees it: a table row with its column names (promptly/data/tables.py, as
the prompt writes it), and, for the embedder only, after its page's title, so a question naming the
product does not favour whichever sentence repeats the name (tuning AUC 0.841 -> 0.920).
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
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import numpy as np

from promptly.data.tables import row_with_header
from promptly.records import Evidence
from promptly.retrieval import ContextChunk
from promptly.settings import AnswerStyle, EvidenceSettings
from promptly.utils import text as textlib

ABSTENTION = "The sources do not say"
"""How an abstaining answer starts (evaluation counts answers that start so as abstentions)."""

_FENCE = re.compile(r"^\s*(```|~~~)")
_PROSE_DIRECTIVE = re.compile(r"^\s*(?:```+|~~~+)\s*\{(?:note|warning|tip|important|caution|attention|danger|"
                              r"error|hint|seealso|admonition|tab|tab-item|dropdown|versionadded|versionchanged|"
                              r"deprecated|versionremoved|topic|sidebar|card|div|rubric)\}", re.IGNORECASE)
"""A MyST directive fenced like code whose body is prose (a note, a tab, a version note): read as text."""
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
    nothing), fence lines and table rules are left out. A MyST directive fenced like code whose body is prose
    (```{note}, ```{tab}, ...) is read as text, so a definition list's term joins its ": definition" line.
    """
    units: list[tuple[int, int]] = []
    start: int | None = None
    end = 0
    in_code = False
    open_directives = 0  # prose directives (_PROSE_DIRECTIVE) open around this line
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
            if in_code:
                in_code = False
            elif _PROSE_DIRECTIVE.match(bare):
                open_directives += 1
            elif open_directives and not stripped.strip("`~"):  # a bare fence closes the directive
                open_directives -= 1
            else:
                in_code = True
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

    @cached_property
    def scored(self) -> str:
        """What its support is measured on: the text, but a table row with its column names, as the prompt
        shows it (a row's "2 GB" answers "minimum memory" only through the header's "Minimum")."""
        return row_with_header(str(self.chunk["content"]), self.start, self.end) or self.text

    @property
    def title(self) -> str:
        """Its page's title (the chunk's), which the embedder reads it with."""
        return str(self.chunk.get("title") or "")


_LEAD_IN_END = re.compile(r":[*_`]*$")
_BLOCK_LINES, _BLOCK_CHARS = 12, 700


def with_following_block(content: str, start: int, end: int) -> int:
    """Where a lead-in sentence's statement ends: a sentence that ends its line with ":" ("pip has 3 levels
    of configuration files:") states nothing alone; its facts are the list, code block or table it
    introduces. Returns the end of that block (at most `_BLOCK_LINES` lines and `_BLOCK_CHARS` characters
    from `start`, whole lines only), or `end` when the sentence is not a lead-in or no block follows it."""
    line_end = content.find("\n", end)
    line_end = len(content) if line_end < 0 else line_end
    if content[end:line_end].strip() or not _LEAD_IN_END.search(content[start:end]):
        return end
    block_end, lines, in_code, in_item, offset = end, 0, False, False, line_end + 1
    while offset < len(content) and lines < _BLOCK_LINES:
        newline = content.find("\n", offset)
        newline = len(content) if newline < 0 else newline
        bare = content[offset:newline].rstrip("\r")
        stripped, this_end = bare.strip(), offset + len(bare)
        if stripped and this_end - start > _BLOCK_CHARS:
            break
        if _FENCE.match(bare):
            in_code = not in_code
            block_end = this_end if not in_code else block_end  # a closing fence ends what it closes
        elif in_code or (_LINE_MARKER.match(bare) and not _HEADING.match(bare)) or stripped.startswith("|"):
            in_item = not in_code and not stripped.startswith("|")
            block_end = this_end
        elif stripped and in_item and bare[:1].isspace():  # a list item's continuation line
            block_end = this_end
        elif stripped:  # a heading or a new paragraph: the block is over
            break
        lines += bool(stripped)
        offset = newline + 1
    return block_end


def candidates(chunks: Sequence[ContextChunk]) -> list[Candidate]:
    """Every sentence of the chunks, numbered as the prompt numbers the chunks (from 1); a lead-in sentence
    runs on over the list, code or table it introduces (`with_following_block`), whose lines stay
    candidates of their own too."""
    out: list[Candidate] = []
    for n, chunk in enumerate(chunks, start=1):
        content = str(chunk["content"])
        out.extend(Candidate(n, chunk, s, with_following_block(content, s, e)) for s, e in sentence_spans(content))
    return out


def display(sentence: str) -> str:
    """A sentence on one line for quoting: hard wraps and runs of spaces collapsed; the items, code lines
    and rows of a lead-in's block (`with_following_block`) joined by "; ", without list markers, fences or
    table rules."""
    if "\n" not in sentence:
        return " ".join(sentence.split())
    pieces: list[str] = []
    in_code, continues = False, True  # continues: an unmarked line carries on the piece before it
    for line in sentence.splitlines():
        if _FENCE.match(line):
            in_code, continues = not in_code, False
            continue
        if not line.strip() or (_TABLE_RULE.match(line) and "-" in line):
            continues = False
            continue
        marker = None if in_code or line.lstrip().startswith("|") else _LINE_MARKER.match(line)
        text = " ".join(line[marker.end() if marker else 0 :].split())
        if pieces and continues and marker is None and not in_code and not line.lstrip().startswith("|"):
            pieces[-1] = f"{pieces[-1]} {text}"
        else:
            pieces.append(text)
        continues = not in_code and not line.lstrip().startswith("|")
    out = pieces[0] if pieces else ""
    for piece in pieces[1:]:
        out += (" " if out.endswith((".", ";", ":", ",", "!", "?")) else "; ") + piece
    return out


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


def sentence_vectors(sentences: Sequence[str], encoder: SentenceEncoder,
                     titles: Sequence[str] | None = None) -> np.ndarray:
    """The embedder's unit vectors of the sentences as `support_matrix` reads them. `titles` (each sentence's
    page) go before the sentences for the embedder only: a sentence is read on its page, so a question naming
    the product no longer favours the sentences that repeat the name."""
    shown = [display(s) for s in sentences]
    if titles is not None:
        shown = [f"{t}: {x}" if t else x for t, x in zip(titles, shown, strict=True)]
    return _unit(np.asarray(encoder.embed_documents(shown), dtype=np.float32))


def support_matrix(texts: Sequence[str], sentences: Sequence[str], encoder: SentenceEncoder,
                   titles: Sequence[str] | None = None, vectors: np.ndarray | None = None) -> np.ndarray:
    """support(text_i, sentence_j) for every pair: the geometric mean of the embedder's cosine (floored at 0)
    and the BM25 coverage (module docstring). The sentences' vectors are `sentence_vectors(sentences, encoder,
    titles)` unless given (`vectors`: a plan's, so an answer's sentences do not embed its sources again); BM25
    is left without the titles (a word in every sentence weighs nothing, and a title word the question needs
    would lose its weight)."""
    if not texts or not sentences:
        return np.zeros((len(texts), len(sentences)), dtype=np.float32)
    queries = _unit(np.asarray(encoder.embed_queries(list(texts)), dtype=np.float32))
    docs = vectors if vectors is not None else sentence_vectors(sentences, encoder, titles)
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
    vectors: np.ndarray | None = field(default=None, compare=False, repr=False)
    """The candidates' sentence vectors (`sentence_vectors`), reused when the answer's sentences are scored."""


def plan(question: str, chunks: Sequence[ContextChunk], encoder: SentenceEncoder,
         settings: EvidenceSettings) -> EvidencePlan:
    """Score every sentence of the chunks against the question; abstain when none reaches the threshold."""
    cands = tuple(candidates(chunks))
    sentences = [c.scored for c in cands]
    vectors = sentence_vectors(sentences, encoder, [c.title for c in cands]) if cands else None
    scores = support_matrix([question], sentences, encoder, vectors=vectors)
    row = tuple(float(x) for x in scores[0]) if cands else ()
    best = max(row, default=0.0)
    return EvidencePlan(cands, row, best, abstain=best < settings.abstain_below, vectors=vectors)


def _evidence(cand: Candidate, score: float, answer_sentence: int | None) -> Evidence:
    return Evidence(number=cand.number, chunk_id=str(cand.chunk["chunk_id"]),
                    document_id=str(cand.chunk["document_id"]), sentence=cand.text, start=cand.start,
                    end=cand.end, support=round(score, 4), answer_sentence=answer_sentence,
                    shown=display(cand.scored))


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


def _overlap(a: Candidate, b: Candidate) -> bool:
    return a.chunk["chunk_id"] == b.chunk["chunk_id"] and a.start < b.end and b.start < a.end


def extractive(question: str, p: EvidencePlan, settings: EvidenceSettings) -> EvidencedAnswer:
    """The best question-supporting sentences, quoted in source order of their score, each with its marker
    (as a reader sees them: on one line, a table row with its column names)."""
    if p.abstain:
        return abstention(question, p, AnswerStyle.extractive.value)
    order = sorted(range(len(p.candidates)), key=lambda i: -p.question_support[i])
    chosen: list[int] = []
    seen: set[str] = set()
    for i in order:
        cand = p.candidates[i]
        key = display(cand.text).lower()
        if key in seen or any(_overlap(cand, p.candidates[j]) for j in chosen):  # overlapping chunks repeat
            continue  # sentences, and a lead-in's block holds the items that are candidates of their own
        if chosen and p.question_support[i] < settings.abstain_below:
            break
        chosen.append(i)
        seen.add(key)
        if len(chosen) >= settings.max_sentences:
            break
    evidence = tuple(_evidence(p.candidates[i], p.question_support[i], n) for n, i in enumerate(chosen))
    text = " ".join(f'"{e.shown}" [{e.number}]' for e in evidence)  # a table row with its column names
    return EvidencedAnswer(text, evidence, False, AnswerStyle.extractive.value, round(p.best_support, 4))


def answer_sentences(answer: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of a generated answer (markers go at their ends)."""
    return sentence_spans(answer)


def generative(question: str, answer: str, p: EvidencePlan, encoder: SentenceEncoder,
               settings: EvidenceSettings) -> EvidencedAnswer:
    """The model's answer with [n] after each sentence a source sentence supports; that sentence is its
    evidence (ranked by support of the answer sentence and of the question together). The best
    question-supporting sentence is shown too, without a marker, unless it is already there: a small model's
    paraphrase may rest on a weaker line than the one that answers."""
    style = AnswerStyle.generative.value
    if p.abstain:
        return abstention(question, p, style)
    answer = _MARKER.sub("", answer).strip()  # the model's own [n] are not evidence: ours replace them
    spans = answer_sentences(answer)
    pieces = [answer[s:e] for s, e in spans]
    evidence: list[Evidence] = []
    used: list[int] = []  # the candidates in `evidence`
    markers: dict[int, int] = {}
    if pieces and p.candidates:
        support = support_matrix(pieces, [c.scored for c in p.candidates], encoder, [c.title for c in p.candidates],
                                 vectors=p.vectors)
        by_question = np.asarray(p.question_support, dtype=np.float32)
        for i in range(len(pieces)):
            j = int(np.argmax(support[i] + by_question))
            if support[i, j] >= settings.marker_threshold:
                markers[i] = p.candidates[j].number
                if j not in used:
                    used.append(j)
                    evidence.append(_evidence(p.candidates[j], float(support[i, j]), i))
    marked = len(evidence)
    if p.candidates:  # what the sources say to the question, even where the answer paraphrased another line
        j = int(np.argmax(p.question_support))
        if not any(_overlap(p.candidates[j], p.candidates[k]) for k in used):
            evidence.append(_evidence(p.candidates[j], p.question_support[j], None))
    text = answer
    for i in sorted(markers, reverse=True):  # from the end, so earlier offsets hold
        end = spans[i][1]
        text = f"{text[:end]} [{markers[i]}]{text[end:]}"
    return EvidencedAnswer(text, tuple(evidence[: max(settings.max_sentences, marked + 1)]), False, style,
                           round(p.best_support, 4))


def strip_markers(text: str) -> str:
    """The answer without its [n] markers (for metrics that compare words)."""
    return _MARKER.sub("", text).strip()


def is_abstention(text: str) -> bool:
    return text.strip().startswith(ABSTENTION)
