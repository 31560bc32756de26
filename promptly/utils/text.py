"""Sentence splitting and content-word extraction shared by the RAG metrics.

Rules are deterministic and need no downloaded data (no NLTK punkt or stopword corpora), so the
metrics give the same numbers on every machine.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from functools import lru_cache
from typing import Any

# A compact English stopword list (NLTK's, plus a few words that carry no fact in an answer).
_STOPWORD_TEXT = """
a about above after again against all also am an and any are aren't as at be because been before being
below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down
during each either else ever every few for from further get gets got had hadn't has hasn't have haven't
having he her here hers herself him himself his how however i if in into is isn't it it's its itself
just let's may me might more most must mustn't my myself neither no nor not now of off on once only or
other ought our ours ourselves out over own same shall shan't she should shouldn't so some such than
that that's the their theirs them themselves then there there's these they this those through to too
under until up upon us use used uses using very via was wasn't we were weren't what what's when where
which while who whom why will with won't would wouldn't yes yet you your yours yourself yourselves
one ones many much well able like e.g i.e etc
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())

# Words that flip a statement's polarity; "n't" endings are caught separately.
NEGATIONS = frozenset(
    {"no", "not", "never", "none", "nothing", "neither", "nor", "cannot", "without", "unsupported"}
)

_ABBREVIATIONS = frozenset(
    {"e.g", "i.e", "etc", "vs", "cf", "approx", "mr", "mrs", "ms", "dr", "no", "fig", "sec"}
)
_LIST_MARKER = re.compile(r"^\s*(?:[-*+•]\s+|\d{1,3}[.)]\s+|#{1,6}\s+|>\s*|\|)")
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]`*]*\s+")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
# A token: a word, number, version, path, flag or identifier; inner punctuation is kept.
_TOKEN = re.compile(r"(?:--?)?[A-Za-z0-9_](?:[A-Za-z0-9_.\-/:@+]*[A-Za-z0-9_])?")
_CODE_SPAN = re.compile(r"`([^`]+)`")
_IDENTIFIER_CHARS = frozenset("_./:@+")
_INFLECTIONS = (("s", ""), ("es", ""), ("ed", ""), ("ed", "e"), ("ing", ""), ("ing", "e"), ("ly", ""))


def split_sentences(text: str) -> list[str]:
    """Split prose or Markdown into sentences.

    Blank lines, list items, headings and table rows end a unit; hard-wrapped lines are joined.
    Inside a unit a sentence ends at `.`, `!` or `?` followed by whitespace, except for a `.` after a
    common abbreviation ("e.g.") or an initial ("J."); decimals and versions ("3.5", "4.2.0") never split.
    """
    sentences: list[str] = []
    for unit in _units(text):
        start = 0
        for match in _SENTENCE_END.finditer(unit):
            before = unit[start : match.start()].rsplit(None, 1)
            last_word = before[-1].lower().strip("(\"'") if before else ""
            initial = len(last_word) == 1 and before[-1].isupper()  # "J. Smith"
            if unit[match.start()] == "." and (last_word in _ABBREVIATIONS or initial):
                continue
            sentences.append(unit[start : match.end()].strip())
            start = match.end()
        sentences.append(unit[start:].strip())
    return [s for s in sentences if any(ch.isalnum() for ch in s)]


def _units(text: str) -> Iterable[str]:
    current: list[str] = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        is_item = bool(_LIST_MARKER.match(line))
        if not line or is_item:
            if current:
                yield " ".join(current)
            current = []
        if line:
            cleaned = _LIST_MARKER.sub("", line).replace("|", " ") if is_item else line
            current.append(" ".join(cleaned.split()))
    if current:
        yield " ".join(current)


def tokens(text: str) -> list[str]:
    """Word, number and identifier tokens in their original case ("1,024" becomes "1024")."""
    return _TOKEN.findall(_THOUSANDS.sub("", text))


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    return _stemmer().stem(word)


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    from nltk.stem.porter import PorterStemmer

    return PorterStemmer()


def normalize(token: str) -> str:
    """The form tokens are matched in: lowercase; plain words Porter-stemmed, identifiers kept whole."""
    low = token.lower()
    return _stem(low) if low.isalpha() else low


def content_words(text: str) -> set[str]:
    """Normalised tokens that are not stopwords: what "covering the reference's content" counts."""
    return {normalize(t) for t in tokens(text) if t.lower() not in STOPWORDS}


def _in_vocabulary(word: str, vocabulary: Collection[str]) -> bool:
    candidates = {word}
    for suffix, repl in _INFLECTIONS:
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            candidates.add(word[: -len(suffix)] + repl)
    return any(c in vocabulary for c in candidates)


def is_critical(token: str, vocabulary: Collection[str] | None = None) -> bool:
    """Whether a token states a checkable fact: a number, a flag, an identifier or a rare word.

    Numbers and versions contain a digit; flags start with "-"; identifiers contain `_ . / : @ +`
    or capitals after the first letter (ALL_CAPS, camelCase, acronyms such as JWT). When a vocabulary
    is given (the embedder's WordPiece vocabulary), a word absent from it, inflections included, is rare.
    """
    if any(ch.isdigit() for ch in token) or token.startswith("-"):
        return True
    if any(ch in _IDENTIFIER_CHARS for ch in token) or any(ch.isupper() for ch in token[1:]):
        return True
    low = token.lower()
    if low in STOPWORDS or vocabulary is None:
        return False
    return not all(_in_vocabulary(part, vocabulary) for part in low.split("-") if part)


def critical_tokens(text: str, vocabulary: Collection[str] | None = None) -> set[str]:
    """Normalised critical tokens of a text, code spans (`...`) included whole and token by token."""
    found = {normalize(t) for t in tokens(text) if is_critical(t, vocabulary)}
    for span in _CODE_SPAN.findall(text):
        found.update(normalize(t) for t in tokens(span) if t.lower() not in STOPWORDS)
    return found


def context_tokens(text: str) -> set[str]:
    """Every normalised token of a text (the context side of a containment check), hyphen parts too."""
    found: set[str] = set()
    for t in tokens(text):
        found.add(normalize(t))
        if "-" in t.strip("-"):
            found.update(normalize(p) for p in t.split("-") if p)
    return found


def is_negated(text: str) -> bool:
    """Whether a sentence carries a negation cue ("not", "never", "cannot", "-n't")."""
    words = re.findall(r"[a-z']+", text.lower())
    return any(w in NEGATIONS or w.endswith("n't") for w in words)
