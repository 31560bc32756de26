"""Re-ingest after what the content hash cannot see in the text: a changed title re-chunks and re-embeds
its document; a changed split rule (ingest.qa.split) moves every document, and its QA pairs (from the
file and generated) and the liked conversations that cite it follow, so no stage disagrees on a split."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from promptly.data.conversations import conversation_examples
from promptly.ingest.chunking import TokenChunker
from promptly.ingest.documents import SourceConfig, load_source
from promptly.ingest.embedding import Embedder
from promptly.ingest.splits import SplitConfig, split_for_document
from promptly.ingest.sync import SyncReport, sync_documents
from promptly.records import QAPair
from promptly.store.postgres import PostgresStore

from .conftest import DIM, SAMPLE_DOCS, SAMPLE_QA
from .test_qa_generate import entry_config

PRODUCT = "driftsync"


def write_records(path: Path, titles: dict[str, str]) -> None:
    path.write_text("\n".join(json.dumps({"id": doc_id, "title": title,
                                          "text": f"{doc_id} keeps messages for seven days. " * 30})
                              for doc_id, title in titles.items()) + "\n")


def sync(root: Path, store: PostgresStore, embedder: Embedder) -> SyncReport:
    chunker = TokenChunker(chunk_tokens=64, overlap_tokens=8)
    return sync_documents(load_source(SourceConfig(path=str(root)), chunker.fingerprint()), store, chunker, embedder)


def test_a_changed_title_rechunks_and_reembeds_its_document(tmp_path: Path, pg_store: PostgresStore,
                                                             embedder: Embedder) -> None:
    records = tmp_path / "records.jsonl"
    write_records(records, {"queue": "Queue retention", "proxy": "Proxy ports"})
    assert sync(tmp_path, pg_store, embedder).added == 2
    before = {c.id: c for c in pg_store.iter_chunks(["queue"])}
    embedded = embedder.texts_embedded

    write_records(records, {"queue": "Message queue retention", "proxy": "Proxy ports"})  # same text
    report = sync(tmp_path, pg_store, embedder)
    assert (report.updated, report.unchanged) == (1, 1)
    after = list(pg_store.iter_chunks(["queue"]))
    assert report.chunks_written == len(after) == len(before)
    assert embedder.texts_embedded - embedded == len(after)  # the queue document's chunks, nothing else
    assert all(c.metadata["title"] == "Message queue retention" for c in after)
    assert all(c.content == before[c.id].content for c in after if c.id in before)
    row = pg_store.conn.execute("select title from documents where id = 'queue'").fetchone()
    assert row is not None and row[0] == "Message queue retention"


def resplit_store(tmp_path: Path, pg_url: str, pg_store: PostgresStore) -> dict[str, str]:
    """One product ingested with its QA file under the default split rule, a generated pair and a liked
    conversation per document added, then ingested again under another rule; the new rule's splits."""
    from promptly.verbs.ingest import run

    docs = tmp_path / "docs"
    shutil.copytree(SAMPLE_DOCS / PRODUCT, docs / PRODUCT)
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(line + "\n" for line in SAMPLE_QA.read_text().splitlines()
                          if line.strip() and json.loads(line)["document_id"].startswith(f"{PRODUCT}/")))

    def ingest(*split: str) -> None:
        cfg = entry_config("ingest", tmp_path, [
            "store=postgres", f"store.url='{pg_url}'", f"ingest.source.path={docs}", f"ingest.qa.path={qa}",
            "ingest.progress=false", *split])
        assert run(cfg).sync.ok

    ingest()
    chunk_of = {}
    for chunk in pg_store.iter_chunks():
        chunk_of.setdefault(chunk.document_id, chunk)
    doc_ids = sorted(chunk_of)
    # What `promptly qa generate` stores (its document's split at the time) and what `serve` records.
    pg_store.upsert_qa_pairs([QAPair(f"What does {d} describe?", "It describes the product.", d,
                                     pg_store.document_splits()[d], (chunk_of[d].id,), origin="generated")
                              for d in doc_ids])
    for d in doc_ids:
        pg_store.add_conversation(f"Tell me about {d}", "An answer.", [chunk_of[d].id], "v0", feedback="up")

    rule = SplitConfig(train=0.5, validation=0.25, test=0.25, seed=7)
    ingest("ingest.qa.split.train=0.5", "ingest.qa.split.validation=0.25", "ingest.qa.split.test=0.25",
           "ingest.qa.split.seed=7")
    expected = {d: split_for_document(d, rule) for d in doc_ids}
    assert expected != {d: split_for_document(d, SplitConfig()) for d in doc_ids}  # the rule does move some
    return expected


def disagreeing(store: PostgresStore, origin: str) -> list[tuple[str, str, str]]:
    splits = store.document_splits()
    return [(p.document_id, p.split, str(splits[p.document_id])) for p in store.iter_qa_pairs(origin=origin)
            if p.split != splits[p.document_id]]


def test_after_a_split_rule_change_documents_file_pairs_and_conversations_agree(
        tmp_path: Path, pg_url: str, pg_store: PostgresStore) -> None:
    expected = resplit_store(tmp_path, pg_url, pg_store)
    with PostgresStore(pg_url, embedding_dim=DIM) as store:
        assert store.document_splits() == expected
        assert list(store.iter_qa_pairs(origin="file")) and not disagreeing(store, "file")
        examples = list(conversation_examples(store))
        assert len(examples) == len(expected)
        assert all(e.pair.split == expected[e.pair.document_id] for e in examples)


def test_after_a_split_rule_change_generated_pairs_follow_their_document(
        tmp_path: Path, pg_url: str, pg_store: PostgresStore) -> None:
    resplit_store(tmp_path, pg_url, pg_store)
    with PostgresStore(pg_url, embedding_dim=DIM) as store:
        assert list(store.iter_qa_pairs(origin="generated")) and not disagreeing(store, "generated")
