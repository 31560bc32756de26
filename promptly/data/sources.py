"""What the datamodule reads from a ChunkStore: checks, spooled QA pairs, document splits, chunk text.

Stores stream through server-side cursors (Postgres) or pages (REST) that must not be interleaved
with other queries on the same connection, so QA pairs are first spooled to a local file (a few
hundred bytes each) and retrieval (promptly.retrieval) then runs batch by batch while reading the spool.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

from promptly.ingest.qa import SplitConfig, split_for_document
from promptly.records import QAPair, Split
from promptly.store.base import ChunkStore, StoreError

log = logging.getLogger(__name__)

INGEST_HINT = "run `promptly ingest` (with a qa.jsonl beside the documents, see ingest.qa.path)"


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
