"""Incremental sync on the real embedded Postgres: unchanged, edited, deleted, broken, crashed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psycopg
import pytest

from promptly.ingest.chunking import TokenChunker
from promptly.ingest.documents import SourceConfig, load_source
from promptly.ingest.embedding import Embedder
from promptly.ingest.splits import SplitConfig, split_for_document
from promptly.ingest.sync import SyncReport, sync_documents
from promptly.store.postgres import PostgresStore

from .conftest import SAMPLE_DOCS


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A writable copy of one product's documents from the sample corpus."""
    root = tmp_path / "docs"
    products = sorted(p for p in SAMPLE_DOCS.iterdir() if p.is_dir())[:1]
    for product in products:
        shutil.copytree(product, root / product.name)
    return root


def ingest(root: Path, store: PostgresStore, embedder: Embedder, **kw: object) -> SyncReport:
    chunker = TokenChunker(chunk_tokens=128, overlap_tokens=16)
    source = SourceConfig(path=str(root), name=str(kw.pop("name", "default")))
    return sync_documents(load_source(source, chunker.fingerprint()), store, chunker, embedder,
                          source_name=source.name, **kw)  # type: ignore[arg-type]


def test_reingest_skips_unchanged_then_tracks_edits_and_deletes(
        corpus: Path, pg_store: PostgresStore, embedder: Embedder) -> None:
    files = sorted(p for p in corpus.rglob("*") if p.is_file())
    first = ingest(corpus, pg_store, embedder)
    assert (first.added, first.updated, first.unchanged, first.deleted, first.failed) == (len(files), 0, 0, 0, [])
    assert first.chunks_written == pg_store.status().chunks > len(files)

    embedded_before = embedder.texts_embedded
    second = ingest(corpus, pg_store, embedder)
    assert (second.added, second.updated, second.unchanged, second.deleted) == (0, 0, len(files), 0)
    assert embedder.texts_embedded == embedded_before  # nothing chunked or embedded again

    edited, removed = files[0], files[1]
    edited.write_text(edited.read_text() + "\n\nA new paragraph about the retention window of 45 days.\n")
    removed.unlink()
    third = ingest(corpus, pg_store, embedder)
    assert (third.added, third.updated, third.unchanged, third.deleted) == (0, 1, len(files) - 2, 1)
    doc_ids = set(pg_store.document_hashes())
    assert removed.relative_to(corpus).as_posix() not in doc_ids
    edited_id = edited.relative_to(corpus).as_posix()
    assert any("retention window of 45 days" in c.content for c in pg_store.iter_chunks([edited_id]))


def test_each_document_is_stored_with_its_split_and_a_new_rule_resplits_without_embedding(
        corpus: Path, pg_store: PostgresStore, embedder: Embedder) -> None:
    ingest(corpus, pg_store, embedder)
    splits = pg_store.document_splits()
    assert splits and all(s == split_for_document(d, SplitConfig()) for d, s in splits.items())
    before = embedder.texts_embedded
    other = SplitConfig(train=0.5, validation=0.25, test=0.25, seed=7)
    report = ingest(corpus, pg_store, embedder, split=other)
    expected = {d: split_for_document(d, other) for d in splits}
    assert report.unchanged == len(splits) and embedder.texts_embedded == before
    assert report.resplit == sum(expected[d] != splits[d] for d in splits) > 0
    assert pg_store.document_splits() == expected
    assert ingest(corpus, pg_store, embedder, split=other).resplit == 0


def test_broken_file_is_skipped_and_keeps_its_last_good_version(
        corpus: Path, pg_store: PostgresStore, embedder: Embedder) -> None:
    ingest(corpus, pg_store, embedder)
    victim = sorted(corpus.rglob("*.md"))[0]
    victim_id = victim.relative_to(corpus).as_posix()
    before = [c.content for c in pg_store.iter_chunks([victim_id])]
    victim.write_bytes(b"\x00\x00binary garbage")
    (corpus / "new-good.md").write_text("# New\n\nA new document about queue depth limits.")
    (corpus / "new-broken.txt").write_bytes("na\xefve".encode("latin-1"))
    report = ingest(corpus, pg_store, embedder)
    assert report.added == 1 and report.deleted == 0
    assert sorted(f.path for f in report.failed) == sorted(["new-broken.txt", victim_id])
    assert [c.content for c in pg_store.iter_chunks([victim_id])] == before
    assert "new-good.md" in pg_store.document_hashes() and not report.ok


def test_a_broken_jsonl_line_deletes_nothing_it_might_hold(
        tmp_path: Path, pg_store: PostgresStore, embedder: Embedder) -> None:
    root = tmp_path / "records"
    root.mkdir()
    faq = root / "faq.jsonl"
    records = [json.dumps({"id": f"faq-{i}", "text": f"Answer number {i} about queue limits."}) for i in range(3)]
    faq.write_text("\n".join(records))
    assert ingest(root, pg_store, embedder).added == 3
    faq.write_text("\n".join([records[0], '{"id": "faq-1", "text": "cut sh', records[2]]))  # faq-1's line broke
    broken = ingest(root, pg_store, embedder)
    assert (broken.deleted, broken.kept) == (0, 1) and [f.hides_ids for f in broken.failed] == [True]
    assert set(pg_store.document_hashes()) == {"faq-0", "faq-1", "faq-2"}
    faq.write_text("\n".join(records) + "\n" + "x" * 6_000_000)  # the whole file now oversized
    oversized = ingest(root, pg_store, embedder)
    assert (oversized.deleted, oversized.kept) == (0, 3) and "oversized" in oversized.failed[0].reason
    faq.write_text("\n".join([records[0], records[2]]))  # really removed, every line readable
    fixed = ingest(root, pg_store, embedder)
    assert (fixed.deleted, fixed.kept) == (1, 0) and set(pg_store.document_hashes()) == {"faq-0", "faq-2"}


def test_crash_inside_a_document_leaves_it_as_it_was(
        corpus: Path, pg_url: str, pg_store: PostgresStore, embedder: Embedder) -> None:
    ingest(corpus, pg_store, embedder)
    target = sorted(corpus.rglob("*.md"))[0]
    target_id = target.relative_to(corpus).as_posix()
    before = [c.content for c in pg_store.iter_chunks([target_id])]
    # A real failure inside Postgres: a trigger that rejects one chunk in the middle of the document.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("""
            create function reject_poison() returns trigger language plpgsql as $$
            begin
                if new.content like '%POISON%' then raise exception 'poisoned chunk'; end if;
                return new;
            end $$;
            create trigger reject_poison before insert on chunks for each row execute function reject_poison();
        """)
    text = target.read_text()
    target.write_text(text + "\n\n" + "filler sentence about settings. " * 80 + "\n\nPOISON here\n\n" + "tail. " * 50)
    other = sorted(corpus.rglob("*.md"))[1]
    other.write_text(other.read_text() + "\n\nAn innocent edit.\n")
    report = ingest(corpus, pg_store, embedder)
    assert [f.path for f in report.failed] == [target_id]
    assert "poisoned chunk" in report.failed[0].reason
    assert [c.content for c in pg_store.iter_chunks([target_id])] == before  # no half-written chunks
    assert report.updated == 1  # the other edit still landed
    # Once the cause is gone, the next ingest picks the document up again.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("drop trigger reject_poison on chunks")
    assert ingest(corpus, pg_store, embedder).updated == 1


def test_cleanup_modes(corpus: Path, pg_store: PostgresStore, embedder: Embedder, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "extra.md").write_text("# Extra\n\nKept by a second source.")
    ingest(corpus, pg_store, embedder, name="docs")
    ingest(other, pg_store, embedder, name="other", cleanup="incremental")
    victim = sorted(corpus.rglob("*.md"))[0]
    victim.unlink()
    victim_id = victim.relative_to(corpus).as_posix()

    assert ingest(corpus, pg_store, embedder, name="docs", cleanup="none").deleted == 0
    assert victim_id in pg_store.document_hashes()
    incremental = ingest(corpus, pg_store, embedder, name="docs", cleanup="incremental")
    assert incremental.deleted == 1  # only within source "docs": extra.md survives
    assert "extra.md" in pg_store.document_hashes()
    full = ingest(corpus, pg_store, embedder, name="docs", cleanup="full")
    assert full.deleted == 1 and "extra.md" not in pg_store.document_hashes()
    with pytest.raises(ValueError, match="cleanup"):
        ingest(corpus, pg_store, embedder, cleanup="sometimes")
