"""Incremental sync as a plan and an apply: skip unchanged documents, replace changed ones atomically,
delete what disappeared, and refuse a mass deletion before anything is written.

The plan reads the source and the store's hashes and decides everything (add, update, resplit, delete);
`DeletionGuard` checks it; only then does `apply_sync` chunk, embed and write. So a wrong, empty or
half-mounted source path changes nothing unless the user says it may (rsync's `--max-delete`, a Terraform plan).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

from promptly.errors import ConfigError, EmptyInputError
from promptly.ingest.chunking import TokenChunker, untruncated_tokenizer
from promptly.ingest.documents import LoadFailure
from promptly.ingest.embedding import Embedder
from promptly.ingest.splits import SplitConfig, split_for_document
from promptly.records import Chunk, Document, Split
from promptly.store.base import ChunkStore

log = logging.getLogger(__name__)

CleanupMode = Literal["full", "incremental", "none"]
ALLOW_SETTING = "ingest.allow_mass_delete=true"


class MassDeletionError(ConfigError):
    """A sync would delete more of the stored corpus than `ingest.max_delete_fraction` allows."""


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


@dataclass
class SyncPlan:
    """What a sync would do, decided before any write (`promptly ingest ingest.dry_run=true` prints it)."""

    to_add: list[Document] = field(default_factory=list)
    to_update: list[Document] = field(default_factory=list)
    unchanged: dict[str, Split] = field(default_factory=dict)
    """Unchanged documents and their split under the current rule (a differing stored split is updated)."""
    to_delete: list[str] = field(default_factory=list)
    kept: int = 0
    """Documents gone from the source that are kept because a failure may hide them."""
    failed: list[LoadFailure] = field(default_factory=list)
    in_scope: int = 0
    """Stored documents that cleanup may delete (this source's with `incremental`, all with `full`)."""
    cleanup: CleanupMode = "incremental"

    @property
    def seen(self) -> int:
        """Documents the source holds (readable or not)."""
        return len(self.to_add) + len(self.to_update) + len(self.unchanged) + len(self.failed)


@dataclass(frozen=True)
class DeletionGuard:
    """Refuses a sync that empties a source or deletes more than `max_fraction` of what it may delete."""

    max_fraction: float = 0.5
    """Largest share of the stored documents in cleanup's scope one sync may delete."""
    allow_mass_delete: bool = False
    """Let this sync delete more (and accept an empty source): the user has said the deletions are meant."""

    def __post_init__(self) -> None:
        if not 0 <= self.max_fraction <= 1:
            raise ConfigError(f"ingest.max_delete_fraction must be between 0 and 1, got {self.max_fraction}")

    def check(self, plan: SyncPlan, source: str) -> None:
        """Raise (so nothing is written) when the plan looks like a mistake rather than an edit."""
        if self.allow_mass_delete:
            return
        if plan.seen == 0:
            raise EmptyInputError(
                f"ingest.source.path={source} holds no documents: nothing was changed. Check the path "
                f"(a folder, file or glob with one of ingest.source.suffixes); to empty the store's copy of this "
                f"source on purpose, set {ALLOW_SETTING}")
        n, total = len(plan.to_delete), plan.in_scope
        if not n:
            return
        if n == total or n / total > self.max_fraction:
            share = "every stored document" if n == total else f"{n / total:.0%} of the stored documents"
            scope = "in the store" if plan.cleanup == "full" else "of this ingest.source.name"
            raise MassDeletionError(
                f"this ingest would delete {n} of {total} stored documents ({share} {scope}, e.g. "
                f"{', '.join(plan.to_delete[:3])}); nothing was changed. More than ingest.max_delete_fraction="
                f"{self.max_fraction} looks like a wrong ingest.source.path or a second corpus under the same "
                f"ingest.source.name. Preview with ingest.dry_run=true; if the deletions are meant, set "
                f"{ALLOW_SETTING}")


def plan_sync(documents: Iterable[Document | LoadFailure], store: ChunkStore | None,
              cleanup: CleanupMode = "incremental", source_name: str | None = None, split: SplitConfig | None = None,
              on_progress: Callable[[str], None] | None = None) -> SyncPlan:
    """Read the source and compare it with the store (None: one with nothing in it yet); writes nothing."""
    if cleanup not in ("full", "incremental", "none"):
        raise ValueError(f"ingest.cleanup must be full, incremental or none, got {cleanup!r}")
    rule = split or SplitConfig()
    stored = store.document_hashes() if store is not None else {}
    plan = SyncPlan(cleanup=cleanup)
    seen: set[str] = set()
    for item in documents:
        if isinstance(item, LoadFailure):
            log.warning("skipped %s: %s", item.path, item.reason)
            plan.failed.append(item)
        elif item.id in seen:
            plan.failed.append(LoadFailure(item.id, "duplicate document id in this source"))
        else:
            seen.add(item.id)
            doc_split = split_for_document(item.id, rule)
            if stored.get(item.id) == item.content_hash:
                plan.unchanged[item.id] = doc_split
            else:
                (plan.to_update if item.id in stored else plan.to_add).append(replace(item, split=doc_split))
                continue  # progress is reported once it is written
        if on_progress:
            on_progress(item.path if isinstance(item, LoadFailure) else item.id)
    if cleanup != "none":
        in_scope = (store.document_hashes(source=source_name) if cleanup == "incremental" and store is not None
                    else stored)
        _plan_deletions(plan, in_scope, seen)
    return plan


def _plan_deletions(plan: SyncPlan, in_scope: Iterable[str], seen: set[str]) -> None:
    """Which stored documents in cleanup's scope are gone from the source: deleted, unless a failure may
    hide them (then all are kept). A document that failed to load this time is kept: a broken file must
    never lose its last good version."""
    failed_ids = {f.path for f in plan.failed}
    candidates = list(in_scope)
    plan.in_scope = len(candidates)
    gone = [doc_id for doc_id in candidates if doc_id not in seen and doc_id not in failed_ids]
    if gone and any(f.hides_ids for f in plan.failed):
        plan.kept = len(gone)
        log.warning("%d stored documents are not in the source but were kept: a .jsonl file or line could "
                    "not be read, and they may be in it; fix it and ingest again", len(gone))
    else:
        plan.to_delete = sorted(gone)


def apply_sync(plan: SyncPlan, store: ChunkStore, chunker: TokenChunker, embedder: Embedder,
               embed_batch_chunks: int = 256, on_progress: Callable[[str], None] | None = None) -> SyncReport:
    """Carry a plan out. Chunks of several small documents are embedded together (up to `embed_batch_chunks`);
    each document is still written in its own transaction, so a failure leaves it as it was."""
    report = SyncReport(unchanged=len(plan.unchanged), kept=plan.kept, failed=list(plan.failed))
    batch = _WriteBatch(store, chunker, embedder, report, on_progress)
    for doc, is_new in [*((d, True) for d in plan.to_add), *((d, False) for d in plan.to_update)]:
        if not chunker.ready:  # outside the per-document try: a bad chunk size is a config error
            chunker.bind(untruncated_tokenizer(embedder.hf_tokenizer), embedder.max_seq_length)
        try:
            chunks = chunker.split(doc)
        except Exception as err:
            report.failed.append(LoadFailure(doc.id, f"chunking failed: {err}"))
            continue
        if not chunks:
            report.failed.append(LoadFailure(doc.id, "empty: produced no chunks"))
            continue
        batch.add(doc, chunks, is_new)
        if batch.chunks >= embed_batch_chunks:
            batch.flush()
    batch.flush()
    report.resplit = store.set_document_splits(plan.unchanged)  # changes only those that differ
    if plan.to_delete:
        report.deleted = store.delete_documents(plan.to_delete)
    return report


@dataclass
class _WriteBatch:
    """Chunked documents waiting for one embedding call; each is then written in its own transaction."""

    store: ChunkStore
    chunker: TokenChunker
    embedder: Embedder
    report: SyncReport
    on_progress: Callable[[str], None] | None = None
    pending: list[tuple[Document, list[Chunk], bool]] = field(default_factory=list)

    @property
    def chunks(self) -> int:
        return sum(len(c) for _, c, _ in self.pending)

    def add(self, doc: Document, chunks: list[Chunk], is_new: bool) -> None:
        self.pending.append((doc, chunks, is_new))

    def flush(self) -> None:
        """Embed every pending chunk at once, then write document by document (a store error fails that one)."""
        vectors = self.embedder.embed_documents([self.chunker.embedding_text(c)
                                                 for _, chunks, _ in self.pending for c in chunks])
        i = 0
        for doc, chunks, is_new in self.pending:
            embedded = [replace(c, embedding=tuple(float(x) for x in vectors[i + j])) for j, c in enumerate(chunks)]
            i += len(chunks)
            try:
                self.report.chunks_written += self.store.upsert_document(doc, embedded)
            except Exception as err:  # the document stays as it was: its transaction rolled back
                log.error("failed to store %s: %s", doc.id, err)
                self.report.failed.append(LoadFailure(doc.id, f"store error: {type(err).__name__}: {err}"))
                continue
            if is_new:
                self.report.added += 1
            else:
                self.report.updated += 1
            if self.on_progress:
                self.on_progress(doc.id)
        self.pending.clear()


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
    guard: DeletionGuard | None = None,
    source_label: str = "",
) -> SyncReport:
    """Bring the store in line with `documents`: plan, check the plan with `guard`, apply.

    Every document is stored with its split under the `split` rule (default: SplitConfig()); unchanged
    documents whose stored split differs are updated without re-chunking or re-embedding. `guard`
    (default: DeletionGuard()) refuses an empty source or a mass deletion before anything is written.
    """
    started = time.perf_counter()
    plan = plan_sync(documents, store, cleanup, source_name, split, on_progress)
    (guard or DeletionGuard()).check(plan, source_label or str(source_name or "the source"))
    report = apply_sync(plan, store, chunker, embedder, embed_batch_chunks, on_progress)
    report.seconds = time.perf_counter() - started
    return report
