"""Liked served conversations as training examples (`data.sources: [conversations]`).

A liked conversation becomes the record the rag_qa datamodule encodes (`RagExample`: a QAPair and its
context chunks), with the chunks the answer cited as its context, in the order cited. Its split is its
documents' split (stored with each document at ingest), and when the cited documents span splits the
most held-out one wins, so no validation or test document's text is trained on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from promptly.data.sources import document_splits
from promptly.records import QAPair, Split
from promptly.retrieval import RagExample, context_chunk
from promptly.store.base import ChunkStore

_HELD_OUT_ORDER: dict[str, int] = {"train": 0, "validation": 1, "test": 2}


@dataclass
class ConversationReport:
    """How many liked conversations became examples, per split, and how many could not."""

    liked: int = 0
    examples: dict[str, int] = field(default_factory=lambda: {"train": 0, "validation": 0, "test": 0})
    without_chunks: int = 0
    """Liked, but none of the cited chunks is stored any more (or none was cited): left out."""


def conversation_examples(store: ChunkStore, seed: int = 42, split: Split | None = None,
                          report: ConversationReport | None = None) -> Iterator[RagExample]:
    """Liked conversations as RagExamples (of one split, if given); disliked and unrated ones never."""
    report = report if report is not None else ConversationReport()
    liked = list(store.iter_conversations(feedback="up"))  # spooled: the next reads need the connection
    report.liked = len(liked)
    stored = store.get_chunks(sorted({c for conv in liked for c in conv.chunk_ids}))
    chunks: dict[str, dict[str, Any]] = {
        cid: context_chunk(c.document_id, c.ordinal, c.content, c.metadata, cid) for cid, c in stored.items()}
    split_of = document_splits(store, seed)
    for conv in liked:
        context = tuple(chunks[c] for c in dict.fromkeys(conv.chunk_ids) if c in chunks)
        if not context:
            report.without_chunks += 1
            continue
        example_split = max((split_of(c["document_id"]) for c in context), key=_HELD_OUT_ORDER.__getitem__)
        report.examples[example_split] += 1
        if split is not None and example_split != split:
            continue
        pair = QAPair(question=conv.question, answer=conv.answer, document_id=context[0]["document_id"],
                      split=example_split, chunk_ids=tuple(c for c in conv.chunk_ids if c in chunks), id=conv.id)
        yield RagExample(pair=pair, chunks=context)
