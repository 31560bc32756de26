"""Incremental sync: skip unchanged documents, replace changed ones atomically, delete what disappeared."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

from promptly.ingest.chunking import TokenChunker, untruncated_tokenizer
from promptly.ingest.documents import LoadFailure
from promptly.ingest.embedding import Embedder
from promptly.ingest.splits import SplitConfig, split_for_document
from promptly.records import Chunk, Document, Split
from promptly.store.base import ChunkStore

log = logging.getLogger(__name__)

CleanupMode = Literal["full", "incremental", "none"]


@dataclass
class SyncReport:
    """What one ingest did; printed as the summary table."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    resplit: int = 0
    """Unchanged documents whose stored split was set or changed (no re-embedding)."""
    kept: int = 0
    """Documents gone from the source but not deleted: some failure hid which documents it held."""
    failed: list[LoadFailure] = field(default_factory=list)
    chunks_written: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


def sync_documents(
    documents: Iterable[Document | LoadFailure],
    store: ChunkStore,
    chunker: TokenChunker,
    embedder: Embedder,
    cleanup: CleanupMode = "incremental",
    source_name: str | None = None,
    embed_batch_chunks: int = 256,
    on_progress: Callable[[str], None] | None = None,
    split: SplitConfig | None = None,
) -> SyncReport:
    """Bring the store in line with `documents`.

    Chunks of several small documents are embedded together (up to `embed_batch_chunks`) so the
    embedder sees full batches; each document is still written in its own transaction. Every
    document is stored with its split under the `split` rule (default: SplitConfig()); unchanged
    documents whose stored split differs (the rule changed, or they predate splits) are updated
    without re-chunking or re-embedding.
    """
    rule = split or SplitConfig()
    if cleanup not in ("full", "incremental", "none"):
        raise ValueError(f"ingest.cleanup must be full, incremental or none, got {cleanup!r}")
    started = time.perf_counter()
    report = SyncReport()
    stored = store.document_hashes()
    seen: set[str] = set()
    pending: list[tuple[Document, list[Chunk], bool]] = []
    unchanged_splits: dict[str, Split] = {}

    def flush() -> None:
        texts = [chunker.embedding_text(c) for _, chunks, _ in pending for c in chunks]
        vectors = embedder.embed_documents(texts)
        i = 0
        for doc, chunks, is_new in pending:
            embedded = []
            for c in chunks:
                embedded.append(Chunk(document_id=c.document_id, ordinal=c.ordinal, content=c.content,
                                      token_count=c.token_count, metadata=c.metadata,
                                      embedding=tuple(float(x) for x in vectors[i])))
                i += 1
            try:
                report.chunks_written += store.upsert_document(doc, embedded)
            except Exception as err:  # the document stays as it was: its transaction rolled back
                log.error("failed to store %s: %s", doc.id, err)
                report.failed.append(LoadFailure(doc.id, f"store error: {type(err).__name__}: {err}"))
                continue
            if is_new:
                report.added += 1
            else:
                report.updated += 1
            if on_progress:
                on_progress(doc.id)
        pending.clear()

    for item in documents:
        if isinstance(item, LoadFailure):
            log.warning("skipped %s: %s", item.path, item.reason)
            report.failed.append(item)
            if on_progress:
                on_progress(item.path)
            continue
        if item.id in seen:
            report.failed.append(LoadFailure(item.id, "duplicate document id in this source"))
            continue
        seen.add(item.id)
        doc_split = split_for_document(item.id, rule)
        item = replace(item, split=doc_split)
        if stored.get(item.id) == item.content_hash:
            unchanged_splits[item.id] = doc_split
            report.unchanged += 1
            if on_progress:
                on_progress(item.id)
            continue
        if not chunker.ready:  # outside the per-document try: a bad chunk size is a config error
            chunker.bind(untruncated_tokenizer(embedder.hf_tokenizer), embedder.max_seq_length)
        try:
            chunks = chunker.split(item)
        except Exception as err:
            report.failed.append(LoadFailure(item.id, f"chunking failed: {err}"))
            continue
        if not chunks:
            report.failed.append(LoadFailure(item.id, "empty: produced no chunks"))
            continue
        pending.append((item, chunks, item.id not in stored))
        if sum(len(c) for _, c, _ in pending) >= embed_batch_chunks:
            flush()
    flush()
    report.resplit = store.set_document_splits(unchanged_splits)  # changes only those that differ

    if cleanup != "none":
        failed_ids = {f.path for f in report.failed}
        candidates = store.document_hashes(source=source_name) if cleanup == "incremental" else stored
        # A document that failed to load this time is kept: a broken file must never lose its last good version.
        gone = [doc_id for doc_id in candidates if doc_id not in seen and doc_id not in failed_ids]
        if gone and any(f.hides_ids for f in report.failed):
            report.kept = len(gone)
            log.warning("%d stored documents are not in the source but were kept: a .jsonl file or line could "
                        "not be read, and they may be in it; fix it and ingest again", len(gone))
        else:
            report.deleted = store.delete_documents(gone)
    report.seconds = time.perf_counter() - started
    return report
