"""Examples streamed from a ChunkStore: QA pairs with retrieved context, or chunk text.

Stores stream through server-side cursors (Postgres) or pages (REST) that must not be interleaved
with other queries on the same connection, so QA pairs are first spooled to a local file (a few
hundred bytes each) and retrieval then runs batch by batch while reading the spool.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from promptly.ingest.qa import SplitConfig, split_for_document
from promptly.records import Chunk, QAPair, Split
from promptly.store.base import ChunkStore, StoreError

log = logging.getLogger(__name__)

INGEST_HINT = "run `promptly ingest` (with a qa.jsonl beside the documents, see ingest.qa.path)"


@dataclass(frozen=True)
class RagExample:
    """A QA pair and the chunks its prompt will show, best first."""

    pair: QAPair
    chunks: tuple[dict[str, Any], ...]
    gold_inserted: bool = False


def check_store(store: ChunkStore, needs_qa: bool) -> None:
    """Fail early, saying what to run, when the store has nothing to learn from."""
    status = store.status()
    if not status.applied_migrations:
        raise StoreError(f"the store has no schema yet: {INGEST_HINT}")
    if status.documents == 0 or status.chunks == 0:
        raise StoreError(f"the store holds no documents: {INGEST_HINT}")
    if needs_qa and status.qa_pairs == 0:
        raise StoreError(
            f"the store holds {status.documents} documents but no QA pairs, which data=rag_qa trains on: "
            f"{INGEST_HINT}, or train with data=causal_lm on the chunks alone"
        )


def spool_qa_pairs(store: ChunkStore, split: Split, directory: Path) -> Path:
    """Stream one split's pairs to a JSON-lines file and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=directory, suffix=f".{split}.jsonl", delete=False,
                                     encoding="utf-8") as f:
        for pair in store.iter_qa_pairs(split=split):
            f.write(json.dumps(asdict(pair)) + "\n")
    return Path(f.name)


def read_spool(path: Path, limit: int | None = None) -> Iterator[QAPair]:
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f):
            if limit is not None and i >= limit:
                return
            row = json.loads(line)
            row["chunk_ids"] = tuple(row["chunk_ids"])
            yield QAPair(**row)


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


def _chunk_fields(document_id: str, ordinal: int, content: str) -> dict[str, Any]:
    return {"document_id": document_id, "ordinal": ordinal, "content": content}


def iter_rag_examples(
    store: ChunkStore,
    embed_queries: Callable[[Sequence[str]], Any],
    pairs: Iterator[QAPair],
    k: int,
    mode: str,
    include_gold: bool,
    batch_size: int = 64,
) -> Iterator[RagExample]:
    """Each pair with its top-k retrieved chunks (questions embedded in batches)."""
    if k < 1:
        raise ValueError(f"data.retrieval.k must be at least 1, got {k}")
    cache = ChunkCache(store)
    batch: list[QAPair] = []

    def flush() -> Iterator[RagExample]:
        vectors = embed_queries([p.question for p in batch])
        for pair, vector in zip(batch, vectors, strict=True):
            hits = store.search(vector, pair.question, k=k, mode=mode)  # type: ignore[arg-type]
            chunks = [_chunk_fields(h.document_id, h.ordinal, h.content) for h in hits[:k]]
            inserted = False
            if include_gold and pair.chunk_ids and not set(pair.chunk_ids) & {h.chunk_id for h in hits}:
                gold = cache.get(pair.document_id, pair.chunk_ids[0])
                if gold is not None:
                    # A fixed, pair-dependent slot: the model must not learn "the answer is always first".
                    slot = int(pair.id.replace("-", "")[:8] or "0", 16) % max(1, min(k, len(chunks) + 1))
                    chunks = chunks[: k - 1] if len(chunks) >= k else chunks
                    chunks.insert(min(slot, len(chunks)), _chunk_fields(gold.document_id, gold.ordinal,
                                                                        gold.content))
                    inserted = True
            yield RagExample(pair=pair, chunks=tuple(chunks), gold_inserted=inserted)
        batch.clear()

    for pair in pairs:
        batch.append(pair)
        if len(batch) >= batch_size:
            yield from flush()
    if batch:
        yield from flush()


def document_splits(store: ChunkStore, seed: int) -> Callable[[str], Split]:
    """A document's split as the ingest stored it; for a store ingested before splits were stored,
    that of its QA pairs, else the default rule with `seed` (the next `promptly ingest` fills them in)."""
    stored = store.document_splits()
    known: dict[str, Split] = {d: s for d, s in stored.items() if s}
    if len(known) < len(stored):
        for pair in store.iter_qa_pairs():
            known.setdefault(pair.document_id, pair.split)
    rule = SplitConfig(seed=seed)
    return lambda document_id: known.get(document_id) or split_for_document(document_id, rule)


def iter_chunk_texts(store: ChunkStore) -> Iterator[tuple[str, str]]:
    """(document_id, chunk text), ordered by document and ordinal."""
    for chunk in store.iter_chunks():
        yield chunk.document_id, chunk.content
