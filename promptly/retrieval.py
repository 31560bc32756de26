"""Retrieval, once for every stage: query embedding, `search`, and the chunks a prompt shows.

Training examples (the datamodule), evaluation, `promptly ask`, the server and the bias probes all get
their context here, so a question sees the same chunks whoever asks it. Chunks travel as plain dicts
(`document_id`, `ordinal`, `content`, `title`, `chunk_id`, `score`), which prompt templates format
with a running source number (`{number}`) that citations refer to.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from promptly.errors import ConfigError
from promptly.records import Chunk, QAPair, SearchHit
from promptly.store.base import ChunkStore
from promptly.textsafe import clean_text

ContextChunk = dict[str, Any]
"""One chunk as a prompt shows it: document_id, ordinal, content, title, chunk_id, score."""


def context_chunk(document_id: str, ordinal: int, content: str, metadata: dict[str, Any] | None = None,
                  chunk_id: str | None = None, score: float | None = None) -> ContextChunk:
    metadata = metadata or {}
    return {"document_id": document_id, "ordinal": ordinal, "content": content,
            "title": str(metadata.get("title") or document_id),
            "chunk_id": chunk_id or Chunk(document_id=document_id, ordinal=ordinal, content=content,
                                          token_count=0).id,
            "score": score}


def from_hit(hit: SearchHit) -> ContextChunk:
    return context_chunk(hit.document_id, hit.ordinal, hit.content, hit.metadata, hit.chunk_id, hit.score)


@dataclass
class Retriever:
    """One store, one embedder and the search settings: questions in, ranked chunks out."""

    store: ChunkStore
    embedder: Any
    k: int = 3
    """Chunks per question."""
    mode: str = "hybrid"
    """match_chunks' ranking: vector, text or hybrid."""
    batch_size: int = 64
    """Questions embedded together."""

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ConfigError(f"retrieval k must be at least 1, got {self.k}")

    def search(self, questions: Sequence[str], filter: dict[str, Any] | None = None,
               k: int | None = None, viewer: str | None = None) -> list[list[ContextChunk]]:
        """The top-k chunks of each question, best first (questions embedded in batches).

        `viewer`: who asks, for owner visibility inside the search (ChunkStore.search); None sees every chunk.
        """
        k = k or self.k
        out: list[list[ContextChunk]] = []
        for start in range(0, len(questions), self.batch_size):
            # promptly.textsafe: a tokenizer raises TypeError on a lone surrogate (ask, eval and data all come here)
            batch = [clean_text(q) for q in questions[start : start + self.batch_size]]
            vectors = self.embedder.embed_queries(batch)
            for question, vector in zip(batch, vectors, strict=True):
                hits = self.store.search(vector, question, k=k, filter=filter, mode=self.mode,  # type: ignore[arg-type]
                                         viewer=viewer)
                out.append([from_hit(h) for h in hits[:k]])
        return out


@dataclass(frozen=True)
class RagExample:
    """A QA pair and the chunks its prompt will show, best first."""

    pair: QAPair
    chunks: tuple[ContextChunk, ...]
    gold_inserted: bool = False


class ChunkCache:
    """Chunks of the last few documents, to put gold chunks into prompts (pairs come by document)."""

    def __init__(self, store: ChunkStore, size: int = 8) -> None:
        self.store = store
        self.size = size
        self._docs: OrderedDict[str, dict[str, Chunk]] = OrderedDict()

    def get(self, document_id: str, chunk_id: str) -> Chunk | None:
        if document_id not in self._docs:
            self._docs[document_id] = {c.id: c for c in self.store.iter_chunks([document_id])}
            if len(self._docs) > self.size:
                self._docs.popitem(last=False)
        return self._docs[document_id].get(chunk_id)


def gold_slot(pair: QAPair, k: int, retrieved: int) -> int:
    """A fixed, pair-dependent slot for an inserted gold chunk: the model must not learn "the answer
    is always first"."""
    return int(pair.id.replace("-", "")[:8] or "0", 16) % max(1, min(k, retrieved + 1))


def iter_rag_examples(retriever: Retriever, pairs: Iterable[QAPair], include_gold: bool) -> Iterator[RagExample]:
    """Each pair with its top-k retrieved chunks; with `include_gold`, a missed gold chunk replaces the
    lowest-ranked hit (training only: evaluation shows what retrieval really returns)."""
    cache = ChunkCache(retriever.store)
    k = retriever.k
    batch: list[QAPair] = []

    def flush() -> Iterator[RagExample]:
        for pair, chunks in zip(batch, retriever.search([p.question for p in batch]), strict=True):
            inserted = False
            if include_gold and pair.chunk_ids and not set(pair.chunk_ids) & {c["chunk_id"] for c in chunks}:
                gold = cache.get(pair.document_id, pair.chunk_ids[0])
                if gold is not None:
                    slot = gold_slot(pair, k, len(chunks))
                    chunks = chunks[: k - 1] if len(chunks) >= k else chunks
                    chunks.insert(min(slot, len(chunks)), context_chunk(gold.document_id, gold.ordinal,
                                                                        gold.content, gold.metadata, gold.id))
                    inserted = True
            yield RagExample(pair=pair, chunks=tuple(chunks), gold_inserted=inserted)
        batch.clear()

    for pair in pairs:
        batch.append(pair)
        if len(batch) >= retriever.batch_size:
            yield from flush()
    if batch:
        yield from flush()
