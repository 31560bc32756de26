"""QA pairs: parsed, split by document, linked to gold chunks, and re-linked only when needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptly.ingest.chunking import TokenChunker
from promptly.ingest.documents import SourceConfig, load_source
from promptly.ingest.embedding import Embedder
from promptly.ingest.qa import SplitConfig, load_qa_pairs, read_qa_file, split_for_document
from promptly.ingest.sync import sync_documents
from promptly.records import QAPair
from promptly.store.postgres import PostgresStore


def write_jsonl(path: Path, rows: list[object]) -> None:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")


def test_split_is_fixed_per_document_and_follows_the_ratios() -> None:
    cfg = SplitConfig()
    ids = [f"doc-{i}.md" for i in range(2000)]
    splits = [split_for_document(i, cfg) for i in ids]
    assert splits == [split_for_document(i, cfg) for i in ids]  # reproducible
    share = {s: splits.count(s) / len(ids) for s in ("train", "validation", "test")}
    assert abs(share["train"] - 0.8) < 0.04 and abs(share["test"] - 0.1) < 0.03
    other_seed = [split_for_document(i, SplitConfig(seed=7)) for i in ids]
    assert other_seed != splits
    with pytest.raises(ValueError, match="sum to 1"):
        SplitConfig(train=0.9, validation=0.2, test=0.1)


def test_qa_file_parsing(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    write_jsonl(path, [
        {"question": "Q1?", "answer": "A1.", "document_id": "a.md"},
        {"question": "Q2?", "answer": "A2.", "document_id": "a.md"},
        "{broken",
        {"question": "Q3?", "answer": "", "document_id": "b.md"},
    ])
    pairs, failures = read_qa_file(path, SplitConfig())
    assert [p.question for p in pairs] == ["Q1?", "Q2?"]
    assert len({p.split for p in pairs}) == 1 and all(p.id for p in pairs)
    assert [f.path for f in failures] == ["qa.jsonl:3", "qa.jsonl:4"]
    assert "missing answer" in failures[1].reason


def test_gold_chunks_are_linked_and_only_relinked_after_rechunking(
        tmp_path: Path, pg_store: PostgresStore, embedder: Embedder) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "proxy.md").write_text("# Proxy\n\n## Ports\n\nThe proxy listens on port 8080.\n\n## Retries\n\n"
                                   + "Failed upstream calls are retried three times with backoff. " * 20)
    (docs / "queue.md").write_text("# Queue\n\nMessages are kept for seven days before compaction.")
    qa = tmp_path / "qa.jsonl"
    write_jsonl(qa, [
        {"question": "How often are calls retried?", "answer": "Three times, with backoff.",
         "document_id": "proxy.md"},
        {"question": "How long are messages kept?", "answer": "Seven days.", "document_id": "queue.md"},
        {"question": "Who wrote it?", "answer": "Nobody.", "document_id": "ghost.md"},
    ])

    def ingest(chunk_tokens: int) -> None:
        chunker = TokenChunker(chunk_tokens=chunk_tokens, overlap_tokens=8, min_chunk_tokens=4)
        sync_documents(load_source(SourceConfig(path=str(docs)), chunker.fingerprint()), pg_store, chunker, embedder)

    ingest(64)
    report = load_qa_pairs(qa, pg_store, embedder, SplitConfig())
    assert (report.loaded, report.linked) == (2, 2)
    assert [f.reason for f in report.failed] == ["document 'ghost.md' is not in the store"]
    chunks = {c.id: c for c in pg_store.iter_chunks()}
    gold = {p.question: chunks[p.chunk_ids[0]] for p in pg_store.iter_qa_pairs()}
    assert "retried three times" in gold["How often are calls retried?"].content
    assert gold["How long are messages kept?"].document_id == "queue.md"

    before = embedder.texts_embedded
    again = load_qa_pairs(qa, pg_store, embedder, SplitConfig())
    assert (again.loaded, again.linked, embedder.texts_embedded) == (2, 0, before)  # nothing embedded

    ingest(32)  # smaller chunks: proxy.md's chunk ids change, queue.md's single chunk keeps its id
    relinked = load_qa_pairs(qa, pg_store, embedder, SplitConfig())
    assert relinked.linked == 1
    alive = {c.id for c in pg_store.iter_chunks()}
    assert all(p.chunk_ids[0] in alive for p in pg_store.iter_qa_pairs())


def test_pairs_removed_from_the_file_are_removed_from_the_store(
        tmp_path: Path, pg_store: PostgresStore, embedder: Embedder) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "queue.md").write_text("# Queue\n\nMessages are kept for seven days before compaction.")
    chunker = TokenChunker(chunk_tokens=64, overlap_tokens=8, min_chunk_tokens=4)
    sync_documents(load_source(SourceConfig(path=str(docs)), chunker.fingerprint()), pg_store, chunker, embedder)
    keep = {"question": "How long are messages kept?", "answer": "Seven days.", "document_id": "queue.md"}
    drop = {"question": "When does compaction run?", "answer": "After seven days.", "document_id": "queue.md"}
    qa = tmp_path / "qa.jsonl"
    write_jsonl(qa, [keep, drop])
    load_qa_pairs(qa, pg_store, embedder, SplitConfig())
    generated = QAPair("What is compacted?", "Messages.", "queue.md", "train", origin="generated").with_id()
    pg_store.upsert_qa_pairs([generated])

    def stored() -> set[str]:
        return {p.question for p in pg_store.iter_qa_pairs()}

    write_jsonl(qa, [keep, "{a line cut short"])  # `drop` may be the unreadable line: nothing is removed
    partial = load_qa_pairs(qa, pg_store, embedder, SplitConfig())
    assert (partial.removed, partial.kept_stale) == (0, 1)
    assert stored() == {keep["question"], drop["question"], generated.question}

    qa.write_bytes(json.dumps(keep).encode() + b"\n\xe9t\xe9\n")  # not UTF-8: the whole file is unreadable
    broken = load_qa_pairs(qa, pg_store, embedder, SplitConfig())
    assert [f.reason for f in broken.failed] == ["not UTF-8"] and broken.removed == 0 and broken.kept_stale == 2
    write_jsonl(qa, [keep])
    assert load_qa_pairs(qa, pg_store, embedder, SplitConfig(), cleanup="none").removed == 0
    assert load_qa_pairs(qa, pg_store, embedder, SplitConfig(), cleanup="incremental",
                         source_name="another-source").removed == 0  # queue.md is not that source's
    report = load_qa_pairs(qa, pg_store, embedder, SplitConfig())
    assert (report.removed, report.kept_stale) == (1, 0)
    assert stored() == {keep["question"], generated.question}  # the generated pair is never the file's
