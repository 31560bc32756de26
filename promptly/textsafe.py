"""Text that Postgres and the tokenizers can take: one rule for every string a store writes or queries with.

Two kinds of character break them, and both reach us from ordinary JSON (`"\\u0000"`, `"\\ud800"`):

- NUL (U+0000): Postgres `text` and `jsonb` cannot hold it (psycopg: "PostgreSQL text fields cannot contain
  NUL (0x00) bytes"; jsonb: "unsupported Unicode escape sequence").
- A lone UTF-16 surrogate (U+D800..U+DFFF; a Python str holds one only unpaired, since a JSON pair decodes to
  one character): it has no UTF-8 encoding, so psycopg, httpx and the tokenizers all fail to encode it.

The rule (`clean_text`): NUL is removed, each lone surrogate becomes U+FFFD (the replacement character), and
nothing else changes. The stores apply it to every string they write (documents, chunks, QA pairs,
conversations, model versions, metadata at any depth, keys included) and to every query text and filter value
they read with, so no verb can hit the DataError. The API refuses such text instead (400 naming the field,
`unsafe_reason`): a client should learn that its input was not what it meant.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, TypeVar

from promptly.records import Chunk, Document, QAPair

_UNSAFE = re.compile("[\x00\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")

T = TypeVar("T")


def clean_text(text: str) -> str:
    """The text without NUL characters, with each lone surrogate replaced by U+FFFD."""
    if not _UNSAFE.search(text):
        return text
    return _SURROGATE.sub("\ufffd", text.replace("\x00", ""))


def clean_value(value: T) -> T:
    """`clean_text` applied to every string in a JSON-like value (dict keys and values, list items)."""
    if isinstance(value, str):
        return clean_text(value)  # type: ignore[return-value]
    if isinstance(value, dict):
        return {clean_value(k): clean_value(v) for k, v in value.items()}  # type: ignore[return-value]
    if isinstance(value, list | tuple):
        return type(value)(clean_value(v) for v in value)
    return value


def unsafe_reason(text: str) -> str | None:
    """Why the text cannot be stored or tokenized as sent, or None when it can."""
    found = _UNSAFE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "contains a NUL character (\\u0000)"
    return f"contains a lone UTF-16 surrogate (\\u{ord(found.group()):04x})"


def first_unsafe(value: Any, where: str) -> str | None:
    """'<where>.<path> <reason>' for the first string in a JSON-like value that breaks the rule, or None."""
    if isinstance(value, str):
        reason = unsafe_reason(value)
        return f"{where} {reason}" if reason else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = first_unsafe(key, f"{where} key") or first_unsafe(item, f"{where}.{clean_text(str(key))}")
            if found:
                return found
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = first_unsafe(item, f"{where}[{i}]")
            if found:
                return found
    return None


def clean_document(document: Document) -> Document:
    """The document as a store writes it (its text is not stored, so it is left as it is)."""
    cleaned = replace(document, id=clean_text(document.id), title=clean_text(document.title),
                      source=clean_text(document.source), uri=clean_text(document.uri),
                      metadata=clean_value(document.metadata))
    return document if cleaned == document else cleaned


def clean_chunk(chunk: Chunk, document_id: str | None = None) -> Chunk:
    """The chunk as a store writes it; its id (from its text) is that of the cleaned text, as reads see it."""
    cleaned = replace(chunk, document_id=document_id if document_id is not None else clean_text(chunk.document_id),
                      content=clean_text(chunk.content), metadata=clean_value(chunk.metadata))
    return chunk if cleaned == chunk else cleaned


def clean_pair(pair: QAPair) -> QAPair:
    """The QA pair as a store writes it (a pair without an id gets it from the cleaned question)."""
    cleaned = replace(pair, question=clean_text(pair.question), answer=clean_text(pair.answer),
                      document_id=clean_text(pair.document_id))
    return pair if cleaned == pair else cleaned
