"""Answer-bearing spans of a chunk: the sentences and table rows a question can be written for.

Answer-first generation (Alberti et al., 2019, "Synthetic QA Corpora Generation with Roundtrip
Consistency") picks the answer before the question, so a small model only has to write a question and
the answer is the document's own words. A span is a prose sentence, a list item or a table row that
states something checkable: a definition ("X is a ..."), a number, a default, a command or flag in
backticks, a row of a table. Headings, code blocks and table separators are never spans.

A span's text is the chunk's text with its whitespace collapsed (hard-wrapped lines joined), so it is
in the chunk verbatim up to whitespace; `in_chunk` is that check. Its `keys` are what the answer
tells that the question must not already say (numbers, code spans, the cells of a row, or the words of a
definition's predicate).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from promptly.utils import text as text_rules

KINDS = ("default", "number", "command", "definition", "table_row")
"""What makes a span answer-bearing, in order of preference when a chunk has more than enough."""

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^\s*#{1,6}\s")
_ITEM = re.compile(r"^(\s*(?:[-*+•]|\d{1,3}[.)])\s+)")
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{2,}")
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]`*]*(?=\s+[A-Z`*\"(])")
_ABBREVIATIONS = ("e.g", "i.e", "etc", "vs", "cf", "approx", "no", "fig", "sec")
_NUMBER = re.compile(r"(?<![\w.])\d[\d,.]*(?:\s?(?:%|ms|s|MiB|GiB|KiB|MB|GB|KB|seconds?|minutes?|hours?|days?))?\b")
_CODE = re.compile(r"`([^`\n]+)`")
_DEFAULT = re.compile(r"\bdefaults?\b|\bby default\b", re.IGNORECASE)
_DEFINITION = re.compile(r"^(?:\*\*)?[\w`*\- .]{1,60}?(?:\*\*)?\s+(?:is|are|means|refers to)\s+(?:an?|the|one|how)?\b"
                         r"|^\*\*[^*]+\*\*\s*[–—:-]\s+", re.IGNORECASE)
_PREDICATE = re.compile(r"\s(?:is|are|means|refers to)\s|\*\*\s*[–—:-]\s", re.IGNORECASE)


@dataclass(frozen=True)
class AnswerSpan:
    """One answer a question is asked for."""

    text: str
    """The chunk's words, whitespace collapsed (list markers and table pipes at the ends dropped)."""
    kinds: tuple[str, ...]
    """Why it is answer-bearing (see KINDS)."""
    keys: tuple[str, ...]
    """What the answer tells: a question containing all of them gives its answer away."""
    header: str = ""
    """For a table row: the table's header row (a row means nothing without it)."""
    section: str = ""
    """The nearest heading above the span in the chunk (for the prompt)."""

    @property
    def kind(self) -> str:
        return self.kinds[0]


def collapse(text: str) -> str:
    return " ".join(text.split())


def in_chunk(span: str, content: str) -> bool:
    """Whether `span` is in `content` word for word (whitespace and table pipes aside)."""
    return collapse(span.replace("|", " ")) in collapse(content.replace("|", " "))


def select_spans(content: str, limit: int, min_words: int = 5, max_words: int = 60) -> list[AnswerSpan]:
    """Up to `limit` answer-bearing spans of a chunk, the most informative first, ties in text order."""
    found = [s for s in _candidates(content) if min_words <= len(s.text.split()) <= max_words]
    seen: set[str] = set()
    unique = []
    for span in found:
        if span.text.lower() not in seen:
            seen.add(span.text.lower())
            unique.append(span)
    ranked = sorted(enumerate(unique), key=lambda item: (-_score(item[1]), item[0]))
    return [span for _, span in ranked[:limit]]


def chunk_units(content: str) -> list[str]:
    """Every sentence, list item and table row of a chunk (answer-bearing or not), in text order: what an
    extractive reader chooses from."""
    return [text for text, _, _, _ in _units(content)]


def _score(span: AnswerSpan) -> int:
    """More kinds, and the preferred ones, rank first: a default stated with its number beats a bare number."""
    return sum(len(KINDS) - KINDS.index(k) for k in span.kinds) + (2 if len(span.keys) >= 1 else 0)


def _candidates(content: str) -> Iterator[AnswerSpan]:
    for text, section, header, is_row in _units(content):
        span = _row_span(text, header, section) if is_row else _prose_span(text, section)
        if span is not None:
            yield span


def _units(content: str) -> Iterator[tuple[str, str, str, bool]]:
    """(text, section, table header, is a table row) of each sentence, item and row outside code blocks."""
    section, header = "", ""
    in_code = False
    paragraph: list[str] = []

    def flush() -> Iterator[tuple[str, str, str, bool]]:
        if paragraph:
            for sentence in _sentences(" ".join(paragraph)):
                yield sentence, section, "", False
            paragraph.clear()

    lines = content.replace("\r\n", "\n").split("\n")
    for i, raw in enumerate(lines):
        line = raw.strip()
        if _FENCE.match(line):
            yield from flush()
            in_code = not in_code
            continue
        if in_code:
            continue
        if not line or _HEADING.match(line):
            yield from flush()
            if _HEADING.match(line):
                section = line.lstrip("#").strip()
            continue
        if line.startswith("|"):
            yield from flush()
            following = lines[i + 1].strip() if i + 1 < len(lines) else ""
            if _TABLE_SEP.match(line.lstrip("|")):
                continue
            if _TABLE_SEP.match(following.lstrip("|")):  # the header row
                header = line
                continue
            yield _row_text(line), section, header, True
            continue
        item = _ITEM.match(raw)
        if item:
            yield from flush()
            paragraph.append(raw[item.end():].strip())
            continue
        paragraph.append(line)
    yield from flush()


def _sentences(text: str) -> Iterator[str]:
    start = 0
    for match in _SENTENCE_END.finditer(text):
        before = text[start:match.start()].rsplit(None, 1)
        last = before[-1].lower().strip("(\"'") if before else ""
        if text[match.start()] == "." and (last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha())):
            continue
        yield collapse(text[start:match.end()])
        start = match.end()
    rest = collapse(text[start:])
    if rest:
        yield rest


def _prose_span(sentence: str, section: str) -> AnswerSpan | None:
    if sentence.endswith(":"):  # it introduces a list or code block that is not part of the span
        return None
    kinds = []
    if _DEFAULT.search(sentence):
        kinds.append("default")
    numbers = [m.group(0).strip() for m in _NUMBER.finditer(_CODE.sub(" ", sentence))]
    if numbers:
        kinds.append("number")
    codes = _CODE.findall(sentence)
    if codes:
        kinds.append("command")
    definition = _DEFINITION.match(sentence)
    if definition:
        kinds.append("definition")
    if not kinds:
        return None
    keys = [*codes, *numbers]
    if not keys and definition:  # the predicate's words are what a "what is X?" question must not say
        parts = _PREDICATE.split(sentence, maxsplit=1)
        keys = sorted(text_rules.content_words(parts[-1])) if len(parts) == 2 else []
    if not keys:
        keys = sorted(text_rules.content_words(sentence))
    return AnswerSpan(sentence, tuple(kinds), tuple(dict.fromkeys(keys)), section=section)


def _row_text(line: str) -> str:
    return collapse(" | ".join(c.strip() for c in line.strip().strip("|").split("|")))


def _row_span(line: str, header: str, section: str) -> AnswerSpan | None:
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) < 2 or not all(any(ch.isalnum() for ch in c) for c in cells[:2]):
        return None
    text = collapse(" | ".join(cells))
    keys = tuple(c.strip("`* ") for c in cells[1:] if c.strip("`* "))
    return AnswerSpan(text, ("table_row",), keys, header=collapse(header), section=section)


def spans_text(spans: Sequence[AnswerSpan]) -> str:
    """One span a line, for logs and summaries."""
    return "\n".join(f"[{s.kind}] {s.text}" for s in spans)
