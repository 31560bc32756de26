"""Conversations as data: the 0004 migration on a fresh database, the store methods, liked conversations as
training examples (cited chunks as context, split by document), disliked ones exported, and row-level
security: the anonymous role adds conversations and feedback but never reads one."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from promptly.data.conversations import ConversationReport, conversation_examples
from promptly.ingest.chunking import TokenChunker
from promptly.ingest.documents import SourceConfig, load_source
from promptly.ingest.embedding import Embedder
from promptly.ingest.qa import SplitConfig, split_for_document
from promptly.ingest.sync import sync_documents
from promptly.qa.conversations import export_disliked
from promptly.records import Chunk
from promptly.store.postgres import PostgresStore

from .cloud.postgrest_server import prepare_supabase_database
from .conftest import DIM
from .test_qa_generate import entry_config


def doc_in(split: str) -> str:
    """A document id the ingest rule puts in `split`."""
    return next(f"doc-{i}.md" for i in range(200) if split_for_document(f"doc-{i}.md", SplitConfig()) == split)


@pytest.fixture
def chunks(tmp_path: Path, pg_store: PostgresStore, embedder: Embedder) -> dict[str, list[Chunk]]:
    """A train document with two chunks and a test document with one, ingested for real."""
    root = tmp_path / "docs"
    root.mkdir()
    train, test = doc_in("train"), doc_in("test")
    (root / train).write_text("# Proxy\n\n## Ports\n\n" + "The proxy listens on port 8080 by default. " * 8 +
                              "\n\n## Retries\n\n" + "Failed calls are retried three times with backoff. " * 8)
    (root / test).write_text("# Queue\n\nMessages are kept for seven days before compaction removes them.")
    chunker = TokenChunker(chunk_tokens=96, overlap_tokens=0, min_chunk_tokens=4)
    report = sync_documents(load_source(SourceConfig(path=str(root)), chunker.fingerprint()), pg_store, chunker,
                            embedder)
    assert report.ok
    out: dict[str, list[Chunk]] = {train: [], test: []}
    for chunk in pg_store.iter_chunks():
        out[chunk.document_id].append(chunk)
    assert len(out[train]) >= 2 and len(out[test]) == 1
    return out


def test_migration_creates_the_table_and_store_methods_roundtrip(pg_store: PostgresStore) -> None:
    assert "0004" in pg_store.status().applied_migrations
    assert pg_store.migrate() == []  # idempotent
    liked = pg_store.add_conversation("Which port?", "8080.", ["6f1c7a52-1d0e-4d7e-9a51-0c9d2b7f4a10"], "v3")
    disliked = pg_store.add_conversation("How long?", "Forever.", [], "v3", feedback="down")
    unrated = pg_store.add_conversation("Who?", "Nobody.")
    assert pg_store.set_feedback(liked, "up") is True
    assert pg_store.set_feedback("00000000-0000-0000-0000-000000000000", "up") is False
    with pytest.raises(ValueError, match="feedback must be"):
        pg_store.set_feedback(unrated, "meh")  # type: ignore[arg-type]

    everything = list(pg_store.iter_conversations())
    assert [c.id for c in everything] == [liked, disliked, unrated]  # oldest first
    (up,) = pg_store.iter_conversations(feedback="up")
    assert (up.question, up.answer, up.chunk_ids, up.model_version, up.feedback) == (
        "Which port?", "8080.", ("6f1c7a52-1d0e-4d7e-9a51-0c9d2b7f4a10",), "v3", "up")
    assert up.created_at is not None
    assert [c.id for c in pg_store.iter_conversations(feedback="down")] == [disliked]
    assert pg_store.set_feedback(liked, None) is True  # a user may take their vote back
    assert list(pg_store.iter_conversations(feedback="up")) == []


def test_liked_conversations_become_examples_and_disliked_are_exported(
        tmp_path: Path, pg_store: PostgresStore, chunks: dict[str, list[Chunk]]) -> None:
    train, test = doc_in("train"), doc_in("test")
    first, second = chunks[train][1], chunks[train][0]
    liked = pg_store.add_conversation("How often are failed calls retried?", "Three times, with backoff.",
                                      [first.id, second.id], "v1", feedback="up")
    mixed = pg_store.add_conversation("How long are messages kept, and where?", "Seven days.",
                                      [first.id, chunks[test][0].id], "v1", feedback="up")
    orphan = pg_store.add_conversation("Gone?", "Yes.", ["00000000-0000-0000-0000-000000000001"], "v1")
    pg_store.set_feedback(orphan, "up")
    disliked = pg_store.add_conversation("Which port?", "Port 22.", [second.id], "v2", feedback="down")
    pg_store.add_conversation("Unrated?", "Yes.", [second.id], "v2")

    report = ConversationReport()
    examples = {ex.pair.id: ex for ex in conversation_examples(pg_store, report=report)}

    assert sorted(examples) == sorted([liked, mixed])  # disliked and unrated never train
    ex = examples[liked]
    assert (ex.pair.question, ex.pair.answer, ex.pair.split) == (
        "How often are failed calls retried?", "Three times, with backoff.", "train")
    assert [c["content"] for c in ex.chunks] == [first.content, second.content]  # cited order
    assert ex.pair.chunk_ids == (first.id, second.id) and ex.pair.document_id == train
    assert examples[mixed].pair.split == "test"  # a test document cited: never trained on
    assert report.liked == 3 and report.without_chunks == 1
    assert report.examples == {"train": 1, "validation": 0, "test": 1}
    assert [e.pair.id for e in conversation_examples(pg_store, split="train")] == [liked]

    path = tmp_path / "review" / "disliked.jsonl"
    assert export_disliked(pg_store, path) == 1
    (row,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert (row["id"], row["question"], row["answer"], row["chunk_ids"], row["feedback"], row["model_version"]) == (
        disliked, "Which port?", "Port 22.", [second.id], "down", "v2")


def test_qa_export_command_writes_the_disliked_conversations(tmp_path: Path, pg_store: PostgresStore,
                                                            pg_url: str) -> None:
    from promptly.verbs.qa import run

    pg_store.add_conversation("Q1?", "Bad answer.", [], "v1", feedback="down")
    pg_store.add_conversation("Q2?", "Good answer.", [], "v1", feedback="up")
    cfg = entry_config("qa", tmp_path, ["action=export", "store=postgres", f"store.url='{pg_url}'"])
    assert run(cfg) == 1
    lines = (tmp_path / "run" / "disliked_conversations.jsonl").read_text().splitlines()
    assert [json.loads(line)["question"] for line in lines] == ["Q1?"]


@pytest.mark.parametrize("supabase_like", [False, True])
def test_anon_may_add_conversations_and_feedback_but_never_read(pg_url: str, supabase_like: bool) -> None:
    if supabase_like:  # default privileges grant every new table to anon, as on a new Supabase project
        prepare_supabase_database(pg_url)
    with PostgresStore(pg_url, embedding_dim=DIM) as store:
        store.migrate()
        existing = store.add_conversation("Private question?", "Private answer.", [], "v1")
        conn = store.conn
        for query in ("select * from conversations", "select count(*) from conversations",
                      "update conversations set feedback = 'up'", "delete from conversations"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute("set local role anon")
                conn.execute(query)
        with conn.transaction():
            conn.execute("set local role anon")
            conn.execute("insert into conversations (id, question, answer) values "
                         "('11111111-1111-1111-1111-111111111111', 'Anon question?', 'Anon answer.')")
            assert conn.execute("select promptly_set_feedback(%s, 'down')", (existing,)).fetchone() == (True,)
        with conn.transaction():
            conn.execute("set local role service_role")
            rows = conn.execute("select question, feedback from conversations order by question").fetchall()
        assert rows == [("Anon question?", None), ("Private question?", "down")]


def test_serving_api_role_writes_through_the_store_but_cannot_read(pg_url: str) -> None:
    """The store used as the serving API would, connected as a login role acting as `anon`."""
    with PostgresStore(pg_url, embedding_dim=DIM) as admin:
        admin.migrate()
        admin.conn.execute("drop role if exists promptly_test_api")
        admin.conn.execute("create role promptly_test_api login password 'api-secret'")
        admin.conn.execute("grant anon to promptly_test_api")
        admin.conn.commit()
    params = {k: v for k, v in conninfo_to_dict(pg_url).items() if v is not None}
    params.update(user="promptly_test_api", password="api-secret", options="-c role=anon")
    try:
        with PostgresStore(make_conninfo(**params), embedding_dim=DIM) as api:
            conv = api.add_conversation("Which port?", "8080.", [], "v1")
            assert api.set_feedback(conv, "up") is True
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                list(api.iter_conversations())
        with PostgresStore(pg_url, embedding_dim=DIM) as admin:
            assert [(c.id, c.feedback) for c in admin.iter_conversations()] == [(conv, "up")]
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("drop owned by promptly_test_api")
            conn.execute("drop role if exists promptly_test_api")
