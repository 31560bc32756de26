"""Question/answer pairs from a .jsonl beside the corpus: split by document, linked to gold chunks."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from promptly.ingest.documents import LoadFailure
from promptly.ingest.embedding import Embedder
from promptly.ingest.redaction import Redaction
from promptly.ingest.splits import SplitConfig, split_for_document
from promptly.ingest.sync import ALLOW_SETTING, CleanupMode, DeletionGuard
from promptly.records import QAPair
from promptly.store.base import ChunkStore
from promptly.textsafe import clean_text

log = logging.getLogger(__name__)

Redact = Callable[[str], Redaction]
"""What `Redactor.redact` does to one string: placeholders in, counts out."""


@dataclass
class QAReport:
    loaded: int = 0
    linked: int = 0
    removed: int = 0
    """Pairs from an earlier version of the file that it no longer has."""
    kept_stale: int = 0
    """Such pairs kept because some lines of the file could not be read (one of them may be the pair)."""
    redacted: Counter[str] = field(default_factory=Counter)
    """Placeholders put into questions and answers, by type (when the ingest redacts PII)."""
    failed: list[LoadFailure] = field(default_factory=list)


def read_qa_file(path: Path, split: SplitConfig, redact: Redact | None = None,
                 redacted: Counter[str] | None = None) -> tuple[list[QAPair], list[LoadFailure]]:
    """Parse the QA .jsonl (question, answer, document_id per line).

    With `redact`, PII in questions and answers becomes placeholders before anything else (the id is
    the redacted question's), as in the documents, so a pair never restores what a chunk had redacted.
    """
    pairs: list[QAPair] = []
    failures: list[LoadFailure] = []
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:  # reported like a broken document; nothing is removed
        reason = "not UTF-8" if isinstance(err, UnicodeDecodeError) else f"unreadable: {err.strerror or err}"
        return pairs, [LoadFailure(path.name, reason)]
    for lineno, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            failures.append(LoadFailure(where, f"invalid JSON: {err.msg}"))
            continue
        missing = [k for k in ("question", "answer", "document_id") if not str(row.get(k) or "").strip()]
        if missing:
            failures.append(LoadFailure(where, f"missing {', '.join(missing)}"))
            continue
        # promptly.textsafe's rule before the id (a hash) and the embedder see them, as the store would store them
        doc_id = clean_text(str(row["document_id"]))
        question, answer = clean_text(str(row["question"])).strip(), clean_text(str(row["answer"])).strip()
        if redact is not None:
            q, a = redact(question), redact(answer)
            question, answer = q.text, a.text
            if redacted is not None:
                redacted.update(q.counts)
                redacted.update(a.counts)
        pairs.append(QAPair(question=question, answer=answer, document_id=doc_id,
                            split=split_for_document(doc_id, split)).with_id())
    return pairs, failures


def load_qa_pairs(path: Path, store: ChunkStore, embedder: Embedder, split: SplitConfig,
                  cleanup: CleanupMode = "incremental", source_name: str | None = None,
                  redact: Redact | None = None, guard: DeletionGuard | None = None) -> QAReport:
    """Store the file's pairs, each linked to the chunk of its document that best matches its answer.

    Links are recomputed only where the stored ones no longer exist (the document was re-chunked),
    so re-ingesting an unchanged corpus embeds nothing. Pairs an earlier version of the file stored
    and this one no longer has are deleted as `cleanup` deletes documents (`incremental`: only those
    of this source's documents; `none`: never); generated pairs are never touched. `guard` (default:
    DeletionGuard()) keeps them all, and reports why, when that would remove more than it allows.
    """
    report = QAReport()
    pairs, report.failed = read_qa_file(path, split, redact, report.redacted)
    unreadable = len(report.failed)
    known_docs = set(store.document_hashes())
    stored = {p.id: p.chunk_ids for p in store.iter_qa_pairs(origin="file")}
    alive = store.existing_chunk_ids(sorted({c for ids in stored.values() for c in ids}))
    ready: list[QAPair] = []
    to_link: list[QAPair] = []
    for pair in pairs:
        if pair.document_id not in known_docs:
            report.failed.append(LoadFailure(f"qa {pair.question[:40]!r}",
                                             f"document {pair.document_id!r} is not in the store"))
            continue
        previous = stored.get(pair.id, ())
        if previous and all(c in alive for c in previous):
            ready.append(_with_chunks(pair, previous))
        else:
            to_link.append(pair)
    ready.extend(_link_gold_chunks(to_link, store, embedder))
    report.linked = len(to_link)
    report.loaded = store.upsert_qa_pairs(ready)
    if cleanup != "none":
        _remove_stale(store, {p.id for p in pairs}, unreadable, cleanup, source_name, report,
                      guard or DeletionGuard())
    return report


def _remove_stale(store: ChunkStore, in_file: set[str], unreadable: int, cleanup: CleanupMode,
                  source_name: str | None, report: QAReport, guard: DeletionGuard) -> None:
    scope = set(store.document_hashes(source_name)) if cleanup == "incremental" else None
    in_scope = [p.id for p in store.iter_qa_pairs(origin="file") if scope is None or p.document_id in scope]
    stale = [pair_id for pair_id in in_scope if pair_id not in in_file]
    if stale and unreadable:
        report.kept_stale = len(stale)
        log.warning("%d stored QA pairs are no longer in the QA file but were kept: %d of its lines could not "
                    "be read; fix them and ingest again", len(stale), unreadable)
        return
    if stale and not guard.allow_mass_delete and (len(stale) == len(in_scope)
                                                  or len(stale) / len(in_scope) > guard.max_fraction):
        report.kept_stale = len(stale)
        report.failed.append(LoadFailure(
            "qa file", f"would remove {len(stale)} of the {len(in_scope)} stored QA pairs (more than "
            f"ingest.max_delete_fraction={guard.max_fraction}); all were kept. Check ingest.qa.path; if the removals "
            f"are meant, set {ALLOW_SETTING}"))
        return
    report.removed = store.delete_qa_pairs(stale)


def _link_gold_chunks(pairs: Sequence[QAPair], store: ChunkStore, embedder: Embedder) -> list[QAPair]:
    if not pairs:
        return []
    vectors = embedder.embed_queries([p.answer for p in pairs])
    out = []
    for pair, vector in zip(pairs, vectors, strict=True):
        hits = store.search(vector, pair.answer, k=1, filter={"document_id": pair.document_id}, mode="hybrid")
        out.append(_with_chunks(pair, tuple(h.chunk_id for h in hits)))
    return out


def _with_chunks(pair: QAPair, chunk_ids: tuple[str, ...]) -> QAPair:
    return replace(pair, chunk_ids=chunk_ids)
