"""One contract, every backend: the embedded server, a Postgres URL, and Supabase over REST."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest

from promptly.records import Chunk, Document, QAPair, sha256_hex
from promptly.store.base import (
    ChunkStore,
    ModelVersion,
    ModelVersionNotFoundError,
    SchemaMismatchError,
    StoreError,
)
from promptly.store.postgres import PostgresStore
from tests.cloud.postgrest_server import PostgrestServer

from .conftest import DIM

BACKENDS = ["postgres", "embedded", "supabase"]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest) -> Iterator[ChunkStore]:
    yield request.getfixturevalue(f"{request.param}_contract_store")


@pytest.fixture
def postgres_contract_store(pg_store: PostgresStore) -> PostgresStore:
    return pg_store


def unit(i: int) -> tuple[float, ...]:
    """A unit vector along axis i: cosine similarity 1 with itself and 0 with every other axis."""
    v = np.zeros(DIM, dtype=np.float32)
    v[i % DIM] = 1.0
    return tuple(float(x) for x in v)


def make_doc(doc_id: str, texts: list[str], axis: int, tag: str = "a") -> tuple[Document, list[Chunk]]:
    body = "\n\n".join(texts)
    doc = Document(id=doc_id, text=body, title=doc_id.upper(), source="test", uri=f"file://{doc_id}",
                   content_hash=sha256_hex(body), metadata={"tag": tag})
    chunks = [
        Chunk(document_id=doc_id, ordinal=i, content=t, token_count=len(t.split()),
              metadata={"document_id": doc_id, "tag": tag, "ordinal": i}, embedding=unit(axis + i))
        for i, t in enumerate(texts)
    ]
    return doc, chunks


def test_migrations_apply_twice(store: ChunkStore) -> None:
    assert store.migrate() == []  # already applied by the fixture: nothing left to do
    status = store.status()
    assert len(status.applied_migrations) >= 3 and status.pending_migrations == ()
    assert status.embedding_dim == DIM


def test_upsert_and_stream_chunks(store: ChunkStore) -> None:
    doc, chunks = make_doc("guide.md", ["install with pip", "configure the port", "run the server"], 0)
    assert store.upsert_document(doc, chunks) == 3
    assert store.document_hashes() == {"guide.md": doc.content_hash}
    got = list(store.iter_chunks())
    assert [c.ordinal for c in got] == [0, 1, 2]
    assert [c.content for c in got] == [c.content for c in chunks]
    assert [c.id for c in got] == [c.id for c in chunks]
    assert got[1].embedding is not None and np.argmax(got[1].embedding) == 1
    assert got[0].metadata["tag"] == "a"
    status = store.status()
    assert (status.documents, status.chunks) == (1, 3)


def test_upsert_replaces_all_chunks(store: ChunkStore) -> None:
    store.upsert_document(*make_doc("a.md", ["one", "two", "three"], 0))
    doc, chunks = make_doc("a.md", ["only one now"], 10)
    store.upsert_document(doc, chunks)
    assert [c.content for c in store.iter_chunks()] == ["only one now"]
    assert store.document_hashes()["a.md"] == doc.content_hash


def test_failed_upsert_leaves_previous_version(store: ChunkStore) -> None:
    old_doc, old_chunks = make_doc("a.md", ["old text", "old tail"], 0)
    store.upsert_document(old_doc, old_chunks)
    new_doc, new_chunks = make_doc("a.md", ["new text", "new tail"], 5)
    broken = [*new_chunks[:1], Chunk(document_id="a.md", ordinal=1, content="bad", token_count=1,
                                     embedding=(1.0, 0.0))]  # wrong dimension: fails mid-document
    with pytest.raises(Exception):  # noqa: B017 - each backend raises its own driver error
        store.upsert_document(new_doc, broken)
    assert [c.content for c in store.iter_chunks()] == ["old text", "old tail"]
    assert store.document_hashes()["a.md"] == old_doc.content_hash


def test_delete_cascades_to_chunks_and_qa(store: ChunkStore) -> None:
    store.upsert_document(*make_doc("a.md", ["alpha"], 0))
    store.upsert_document(*make_doc("b.md", ["beta"], 1))
    store.upsert_qa_pairs([QAPair("what is a?", "alpha", "a.md", "train"),
                           QAPair("what is b?", "beta", "b.md", "test")])
    assert store.delete_documents(["a.md", "missing.md"]) == 1
    assert set(store.document_hashes()) == {"b.md"}
    assert [c.document_id for c in store.iter_chunks()] == ["b.md"]
    assert [p.document_id for p in store.iter_qa_pairs()] == ["b.md"]


def test_qa_pairs_roundtrip_and_split_filter(store: ChunkStore) -> None:
    doc, chunks = make_doc("a.md", ["alpha", "beta"], 0)
    store.upsert_document(doc, chunks)
    pairs = [QAPair(f"question {i}?", f"answer {i}", "a.md", "train" if i < 3 else "test",
                    chunk_ids=(chunks[i % 2].id,)) for i in range(5)]
    assert store.upsert_qa_pairs(pairs) == 5
    assert store.upsert_qa_pairs(pairs[:1]) == 1  # same id: updated, not duplicated
    assert len(list(store.iter_qa_pairs())) == 5
    test_pairs = list(store.iter_qa_pairs(split="test"))
    assert sorted(p.question for p in test_pairs) == ["question 3?", "question 4?"]
    assert test_pairs[0].chunk_ids[0] in {c.id for c in chunks}
    assert store.existing_chunk_ids([chunks[0].id, "00000000-0000-0000-0000-000000000000"]) == {chunks[0].id}


def test_document_splits_are_stored_and_set_without_touching_chunks(store: ChunkStore) -> None:
    doc, chunks = make_doc("a.md", ["alpha", "beta"], 0)
    store.upsert_document(replace(doc, split="test"), chunks)
    store.upsert_document(*make_doc("b.md", ["gamma"], 2))  # no split given
    assert store.document_splits() == {"a.md": "test", "b.md": None}
    assert store.set_document_splits({"a.md": "test", "b.md": "train", "ghost.md": "train"}) == 1  # only b changed
    assert store.document_splits() == {"a.md": "test", "b.md": "train"}
    assert [c.id for c in store.iter_chunks(["a.md"])] == [c.id for c in chunks]
    assert store.set_document_splits({}) == 0


def test_qa_pairs_keep_their_origin_and_status_counts_them(store: ChunkStore) -> None:
    store.upsert_document(*make_doc("a.md", ["alpha", "beta"], 0))
    from_file = QAPair("what is alpha?", "alpha", "a.md", "train").with_id()
    generated = QAPair("what is beta?", "beta", "a.md", "train", origin="generated").with_id()
    store.upsert_qa_pairs([from_file, generated])
    assert {p.id: p.origin for p in store.iter_qa_pairs()} == {from_file.id: "file", generated.id: "generated"}
    assert [p.id for p in store.iter_qa_pairs(origin="generated")] == [generated.id]
    assert [p.id for p in store.iter_qa_pairs(split="train", origin="file")] == [from_file.id]
    store.add_conversation("what is alpha?", "alpha", (), "v1", feedback="up")
    store.add_conversation("what is beta?", "gamma", (), "v1", feedback="down")
    status = store.status()
    assert (status.qa_pairs, status.generated_qa_pairs, status.conversations, status.liked_conversations) == (
        2, 1, 2, 1)
    assert store.delete_qa_pairs([generated.id, "00000000-0000-0000-0000-000000000000"]) == 1
    assert [p.id for p in store.iter_qa_pairs()] == [from_file.id]


def test_get_chunks_by_id(store: ChunkStore) -> None:
    doc, chunks = make_doc("a.md", ["alpha", "beta", "gamma"], 0)
    store.upsert_document(doc, chunks)
    missing = "00000000-0000-0000-0000-000000000000"
    got = store.get_chunks([chunks[2].id, missing, chunks[0].id, chunks[2].id])
    assert set(got) == {chunks[0].id, chunks[2].id}
    assert got[chunks[2].id].content == "gamma" and got[chunks[2].id].ordinal == 2
    assert got[chunks[0].id].document_id == "a.md" and got[chunks[0].id].metadata["tag"] == "a"
    assert store.get_chunks([]) == {}


@pytest.mark.parametrize("mode", ["vector", "text", "hybrid"])
def test_search_modes_rank_the_right_chunk_first(store: ChunkStore, mode: str) -> None:
    store.upsert_document(*make_doc("net.md", ["the proxy listens on port 8080", "timeouts are set in seconds"], 0))
    store.upsert_document(*make_doc("db.md", ["backups are compressed with zstd", "replicas follow the primary"], 2))
    hits = store.search(unit(2), "how are backups compressed", k=3, mode=mode)  # type: ignore[arg-type]
    assert hits, f"{mode} search returned nothing"
    assert hits[0].content == "backups are compressed with zstd"
    assert hits[0].document_id == "db.md"


def test_search_filters_on_metadata(store: ChunkStore) -> None:
    store.upsert_document(*make_doc("a.md", ["shared words here"], 0, tag="red"))
    store.upsert_document(*make_doc("b.md", ["shared words here too"], 0, tag="blue"))
    hits = store.search(unit(0), "shared words", k=5, filter={"tag": "blue"}, mode="hybrid")
    assert [h.document_id for h in hits] == ["b.md"]


def test_search_rejects_unknown_mode(store: ChunkStore) -> None:
    store.upsert_document(*make_doc("a.md", ["alpha"], 0))
    with pytest.raises(Exception, match="mode"):
        store.search(unit(0), "alpha", mode="fuzzy")  # type: ignore[arg-type]


def test_store_built_for_other_dimension_is_refused(pg_url: str, pg_store: PostgresStore) -> None:
    other = PostgresStore(pg_url, embedding_dim=768)
    with pytest.raises(SchemaMismatchError, match=r"vector\(384\).*768"):
        other.migrate()
    with pytest.raises(SchemaMismatchError, match="768"):
        other.ensure_schema()
    other.close()


def test_schema_script_applies_and_records_itself(pg_url: str) -> None:
    """`promptly db sql` pasted into an SQL editor leaves a store that `db status` sees as migrated."""
    import psycopg

    from promptly.store.migrations import render_schema_sql

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(render_schema_sql(DIM).encode())
    store = PostgresStore(pg_url, embedding_dim=DIM)
    status = store.status()
    assert status.pending_migrations == () and len(status.applied_migrations) >= 3
    assert store.migrate() == []
    store.close()


# -- published model versions (migration 0008): record, list, promote, roll back -----------------------------
def _version(repo: str, tag: str, bleu: float) -> ModelVersion:
    return ModelVersion(version=tag, repo_id=repo, revision=f"{tag}-commit", metrics={"bleu": bleu},
                        config={"registry": "local", "training": {"optim": {"lr": 0.001}}})


def test_model_versions_promote_and_roll_back_along_the_activation_history(store: ChunkStore) -> None:
    for tag, bleu in (("v1", 0.1), ("v2", 0.2), ("v3", 0.3)):
        store.add_model_version(_version("me/model", tag, bleu))
    store.add_model_version(_version("me/other", "v1", 0.5))  # the label is per repository
    with pytest.raises(StoreError, match="already holds version v2 of me/model"):
        store.add_model_version(_version("me/model", "v2", 0.9))
    listed = store.list_model_versions("me/model")
    assert [(v.version, v.revision, v.metrics["bleu"], v.is_active) for v in listed] == [
        ("v1", "v1-commit", 0.1, False), ("v2", "v2-commit", 0.2, False), ("v3", "v3-commit", 0.3, False)]
    assert listed[0].config["training"]["optim"]["lr"] == 0.001 and listed[0].created_at is not None
    assert len(store.list_model_versions()) == 4 and store.status().model_versions == 4
    assert store.active_model_version() is None
    with pytest.raises(ModelVersionNotFoundError, match="nothing to roll back"):
        store.rollback_model_version()

    for tag in ("v1", "v2", "v3"):
        assert store.promote_model_version("me/model", tag).version == tag
    assert store.promote_model_version("me/model", "v3").is_active  # already active: no new activation
    active = store.active_model_version()
    assert active is not None and (active.repo_id, active.version) == ("me/model", "v3")
    assert store.rollback_model_version().version == "v2"
    assert store.rollback_model_version().version == "v1"
    with pytest.raises(ModelVersionNotFoundError, match="v1 of me/model is the first one promoted"):
        store.rollback_model_version()
    store.promote_model_version("me/other", "v1")
    assert [v.version for v in store.list_model_versions("me/model") if v.is_active] == []
    assert store.rollback_model_version().version == "v1"  # back to me/model's v1, the one before
    active = store.active_model_version()
    assert active is not None and (active.repo_id, active.version) == ("me/model", "v1")

    with pytest.raises(ModelVersionNotFoundError, match="no version v9 of me/model"):
        store.promote_model_version("me/model", "v9")
    active = store.active_model_version()  # a failed promote changed nothing
    assert active is not None and active.version == "v1"


def test_the_anonymous_role_reads_versions_but_cannot_change_them(pg_store: PostgresStore) -> None:
    """Row-level security and grants (migrations 0003, 0008): the server reads with the anon key."""
    import psycopg

    pg_store.add_model_version(_version("me/model", "v1", 0.1))
    pg_store.add_model_version(_version("me/model", "v2", 0.2))
    pg_store.promote_model_version("me/model", "v1")
    conn = pg_store.conn
    with conn.transaction():
        conn.execute("set local role anon")
        assert conn.execute("select version from model_versions where is_active").fetchall() == [("v1",)]
        assert conn.execute("select count(*) from model_version_activations").fetchone() == (1,)
    for query in ("select promptly_promote_model_version('me/model', 'v2')", "select promptly_rollback_model_version()",
                  "update model_versions set is_active = false", "insert into model_version_activations "
                  "(repo_id, version) values ('me/model', 'v2')",
                  "insert into model_versions (version, repo_id) values ('v3', 'me/model')"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute("set local role anon")
            conn.execute(query.encode())
    active = pg_store.active_model_version()
    assert active is not None and active.version == "v1"


def test_the_anon_key_reads_versions_over_rest_but_cannot_change_them(
        supabase_contract_store: ChunkStore, supabase_rest: PostgrestServer) -> None:
    from promptly.store.base import StoreConnectionError
    from promptly.store.supabase import SupabaseStore

    supabase_contract_store.add_model_version(_version("me/model", "v1", 0.1))
    supabase_contract_store.promote_model_version("me/model", "v1")
    with SupabaseStore(supabase_rest.url, supabase_rest.anon_key, embedding_dim=DIM) as anon:
        assert [v.version for v in anon.list_model_versions()] == ["v1"]
        active = anon.active_model_version()
        assert active is not None and active.version == "v1"
        with pytest.raises(StoreConnectionError, match="service_role"):
            anon.promote_model_version("me/model", "v1")
        with pytest.raises(StoreConnectionError):
            anon.add_model_version(_version("me/model", "v2", 0.2))
    assert [v.version for v in supabase_contract_store.list_model_versions()] == ["v1"]


# -- BM25 text ranking (migration 0007): exact under incremental writes, on every backend ---------------------
BM25_WORDS = {"alpha": "alpha beta gamma alpha", "delta": "delta alpha omega", "gamma": "gamma gamma zeta beta"}


def _bm25_reference(texts: list[str], query: list[str], k1: float = 1.2, b: float = 0.75) -> list[float]:
    """Lucene's BM25 (bm25s's default) over whitespace tokens: these words are their own English lexemes."""
    import bm25s

    retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
    retriever.index([t.split() for t in texts], show_progress=False)
    return [float(s) for s in retriever.get_scores([w for w in query if w in retriever.vocab_dict])]


def test_text_search_scores_are_bm25_after_edits_and_deletes(store: ChunkStore) -> None:
    store.upsert_document(*make_doc("a.md", [BM25_WORDS["alpha"], BM25_WORDS["delta"]], 0))
    store.upsert_document(*make_doc("b.md", [BM25_WORDS["gamma"], "omega omega"], 2))
    store.upsert_document(*make_doc("c.md", ["zeta beta"], 4))
    store.upsert_document(*make_doc("b.md", [BM25_WORDS["gamma"], "beta omega alpha"], 2))  # edited
    store.delete_documents(["c.md"])
    texts = [c.content for c in store.iter_chunks()]
    want = dict(zip(texts, _bm25_reference(texts, ["alpha", "beta"]), strict=True))
    hits = store.search(unit(0), "alpha beta", k=10, mode="text")
    assert {h.content: h.score for h in hits} == pytest.approx({t: s for t, s in want.items() if s > 0}, rel=1e-5)
    assert [h.content for h in hits] == sorted((t for t in want if want[t] > 0), key=lambda t: -want[t])


def test_hybrid_fuses_both_rankings_by_reciprocal_rank(store: ChunkStore) -> None:
    store.upsert_document(*make_doc("a.md", [BM25_WORDS["alpha"], BM25_WORDS["delta"]], 0))
    store.upsert_document(*make_doc("b.md", [BM25_WORDS["gamma"], "omega omega"], 2))
    mixed = np.zeros(DIM)
    mixed[:4] = [0.4, 0.3, 0.2, 0.85]  # distinct similarities to the four chunks: no ties in the vector ranking
    query = (tuple(float(x) for x in mixed / np.linalg.norm(mixed)), "gamma zeta")
    fusion = {"rrf_k": 10, "full_text_weight": 1.0, "semantic_weight": 0.5, "candidates": 3, "fusion": "rrf"}
    depth = 4  # each ranking contributes its top max(candidates, k)
    text = [h.chunk_id for h in store.search(*query, k=depth, mode="text")]
    vector = [h.chunk_id for h in store.search(*query, k=depth, mode="vector")]
    fused: dict[str, float] = {}
    for ranking, weight in ((text, 1.0), (vector, 0.5)):
        for rank, chunk_id in enumerate(ranking, start=1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + weight / (10 + rank)
    hits = store.search(*query, k=depth, mode="hybrid", **fusion)  # type: ignore[arg-type]
    assert {h.chunk_id: h.score for h in hits} == pytest.approx(fused)
    assert [h.chunk_id for h in hits] == sorted(fused, key=lambda i: (-fused[i], i))


# -- data balance (migration 0009): documents, chunks and QA pairs per source, owner and document ------------
def test_data_balance_counts_per_source_owner_and_document(store: ChunkStore) -> None:
    from promptly.store.base import BalanceRow

    assert store.data_balance() == []
    docs = [("a.md", ["one", "two", "three"], "docs", "ana"), ("b.md", ["four"], "docs", "ben"),
            ("c.md", ["five", "six"], "wiki", None)]
    for doc_id, texts, source, owner in docs:
        doc, chunks = make_doc(doc_id, texts, 0)
        doc = replace(doc, source=source, metadata={"team": owner} if owner else {})
        store.upsert_document(doc, chunks)
    store.upsert_qa_pairs([QAPair(question=f"q{i}", answer="a", document_id=d, split="train")
                           for i, d in enumerate(["a.md", "a.md", "c.md"])])
    rows = store.data_balance("team")
    assert rows == [
        BalanceRow("document", "a.md", 1, 3, 2), BalanceRow("document", "b.md", 1, 1, 0),
        BalanceRow("document", "c.md", 1, 2, 1),
        BalanceRow("owner", "", 1, 2, 1), BalanceRow("owner", "ana", 1, 3, 2), BalanceRow("owner", "ben", 1, 1, 0),
        BalanceRow("source", "docs", 2, 4, 2), BalanceRow("source", "wiki", 1, 2, 1)]
    assert {r.group for r in store.data_balance() if r.dimension == "owner"} == {""}  # no `owner` key stored
    store.delete_documents(["a.md"])  # its chunks and QA pairs go with it
    assert [r for r in store.data_balance("team") if r.dimension == "source"] == [
        BalanceRow("source", "docs", 1, 1, 0), BalanceRow("source", "wiki", 1, 2, 1)]


# -- owner visibility inside the search (migration 0012) ------------------------------------------------------
@pytest.mark.parametrize("mode", ["vector", "text", "hybrid"])
def test_search_leaves_other_owners_chunks_out_before_ranking(store: ChunkStore, mode: str) -> None:
    """Alice's six chunks match the query better than anything public; bob and an anonymous requester
    still get k public chunks, alice gets hers first, and the offline view (no viewer) sees everything."""
    public_doc, public = make_doc("pub.md", ["backups rotate nightly", "backups are kept for a week"], 0)
    store.upsert_document(public_doc, public)
    words = ["backups rotate compress nightly weekly"] * 6
    alice_doc, alice = make_doc("uploads/alice/notes.txt", [f"{w} {i}" for i, w in enumerate(words)], 10)
    alice_doc = replace(alice_doc, metadata={"owner": "alice"})
    query = np.asarray(unit(10)) + 0.5 * np.asarray(unit(0))  # nearer to alice's first chunk than to any public one
    alice = [replace(c, metadata={"owner": "alice"}, embedding=tuple(float(x) for x in query + 0.01 * i))
             for i, c in enumerate(alice)]
    store.upsert_document(alice_doc, alice)
    text = "backups rotate compress nightly weekly"

    for viewer in ("bob", ""):
        hits = store.search(tuple(query), text, k=2, mode=mode, viewer=viewer)  # type: ignore[arg-type]
        assert sorted(h.document_id for h in hits) == ["pub.md", "pub.md"], (viewer, hits)
    mine = store.search(tuple(query), text, k=2, mode=mode, viewer="alice")  # type: ignore[arg-type]
    assert [h.document_id for h in mine] == ["uploads/alice/notes.txt"] * 2
    everyone = store.search(tuple(query), text, k=6, mode=mode)  # type: ignore[arg-type]
    assert [h.document_id for h in everyone] == ["uploads/alice/notes.txt"] * 6  # what used to starve bob
    owned = store.search(tuple(query), text, k=2, filter={"owner": "alice"}, mode=mode,  # type: ignore[arg-type]
                         viewer="bob")
    assert owned == []  # a filter naming another owner cannot reach past the viewer rule


# -- text Postgres cannot take (promptly.textsafe) --------------------------------------------------------------
def test_nul_and_lone_surrogates_are_cleaned_on_every_write_and_query(store: ChunkStore) -> None:
    bad = "nul\x00here \ud800alone"
    doc_id = "bad\x00doc.md"
    doc = Document(id=doc_id, text=bad, title=f"T{bad}", source="test\x00", uri="file://x\x00",
                   content_hash="h", metadata={"k\x00": bad, "nested": [bad, {"v": "\udfff"}]})
    chunk = Chunk(document_id=doc_id, ordinal=0, content=bad, token_count=3, metadata={"note": bad},
                  embedding=unit(0))
    assert store.upsert_document(doc, [chunk]) == 1

    clean = "nulhere \ufffdalone"
    assert set(store.document_hashes("test")) == {"baddoc.md"}
    (stored,) = list(store.iter_chunks(["bad\x00doc.md"]))
    assert stored.document_id == "baddoc.md" and stored.content == clean and stored.metadata == {"note": clean}
    assert store.existing_chunk_ids([stored.id]) == {stored.id}  # the stored id is that of the stored text

    for mode in ("vector", "text", "hybrid"):
        hits = store.search(unit(0), "nul\x00here \ud800", k=3, filter={"note": bad}, mode=mode,  # type: ignore[arg-type]
                            viewer="b\x00ob")
        assert [h.content for h in hits] == [clean], mode

    pair = QAPair(question="what\x00 is \ud800?", answer="an\x00swer", document_id=doc_id, split="train")
    assert store.upsert_qa_pairs([pair]) == 1
    (got,) = list(store.iter_qa_pairs())
    assert (got.question, got.answer, got.document_id) == ("what is \ufffd?", "answer", "baddoc.md")

    conversation_id = store.add_conversation("q\x00 \udc00", "a\x00", [stored.id], model_version="m\x00")
    (conv,) = [c for c in store.iter_conversations() if c.id == conversation_id]
    assert (conv.question, conv.answer, conv.model_version) == ("q \ufffd", "a", "m")

    store.add_model_version(ModelVersion(version="v1", repo_id="me/m\x00", metrics={"b\x00": 1.0},
                                         config={"note": "\ud800"}))
    (version,) = store.list_model_versions("me/m\x00")
    assert version.repo_id == "me/m" and version.metrics == {"b": 1.0} and version.config == {"note": "\ufffd"}
    assert store.delete_documents([doc_id]) == 1
