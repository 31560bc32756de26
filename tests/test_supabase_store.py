"""SupabaseStore over REST against a local PostgREST stand-in on a real Postgres (see tests/cloud/)."""

from __future__ import annotations

import socket
import traceback
from dataclasses import replace

import httpx
import pytest
from postgrest import APIError

from promptly.records import QAPair
from promptly.store.base import SchemaMismatchError, StoreConnectionError
from promptly.store.supabase import SupabaseStore
from tests.cloud.postgrest_server import PostgrestServer, mint_key

from .conftest import DIM, shipped_migrations
from .test_store_contract import make_doc, unit


def _full_text(err: BaseException) -> str:
    """The message plus the whole chained traceback, as a user's log would show it."""
    return "".join(traceback.format_exception(err))


def test_anon_key_reads_and_searches_but_cannot_write(
    supabase_contract_store: SupabaseStore, supabase_rest: PostgrestServer
) -> None:
    service = supabase_contract_store
    doc, chunks = make_doc("db.md", ["backups are compressed with zstd", "replicas follow the primary"], 0)
    service.upsert_document(doc, chunks)
    service.upsert_qa_pairs([QAPair("how are backups compressed?", "with zstd", "db.md", "train")])

    with SupabaseStore(supabase_rest.url, supabase_rest.anon_key, embedding_dim=DIM) as anon:
        assert anon.migrate() == []
        hits = anon.search(unit(0), "backups compressed", k=2, mode="hybrid")
        assert hits[0].content == "backups are compressed with zstd"
        assert [c.content for c in anon.iter_chunks()] == [c.content for c in chunks]
        assert anon.document_hashes() == {"db.md": doc.content_hash}
        assert [p.answer for p in anon.iter_qa_pairs()] == ["with zstd"]

        # The rpc is not granted to anon: PostgREST answers 401 (42501 for the anonymous role).
        with pytest.raises(StoreConnectionError, match=r"store\.key.*service_role") as refused:
            anon.upsert_document(*make_doc("db.md", ["overwritten"], 3))
        assert isinstance(refused.value.__cause__, APIError) and refused.value.__cause__.code == "42501"
        # Table writes: anon holds Supabase's default grants, so row-level security is what refuses it.
        with pytest.raises(StoreConnectionError, match=r"row-level security"):
            anon.upsert_qa_pairs([QAPair("new?", "no", "db.md", "test")])
        assert anon.delete_documents(["db.md"]) == 0  # RLS hides every row from anon's DELETE

    assert [c.content for c in service.iter_chunks()] == [c.content for c in chunks]
    assert service.status().qa_pairs == 1


def test_the_public_keys_never_read_an_upload(supabase_contract_store: SupabaseStore,
                                              supabase_rest: PostgrestServer) -> None:
    """Row-level security hides owned rows from the anon key: REST reads and search alike (migration 0013)."""
    public, public_chunks = make_doc("db.md", ["backups are compressed with zstd"], 0)
    private, private_chunks = make_doc("uploads/alice/notes.md", ["alice's backups are compressed with zstd"], 1)
    private = replace(private, metadata={**private.metadata, "owner": "alice"})
    private_chunks = [replace(c, metadata={**c.metadata, "owner": "alice"}) for c in private_chunks]
    supabase_contract_store.upsert_document(public, public_chunks)
    supabase_contract_store.upsert_document(private, private_chunks)
    assert len(list(supabase_contract_store.iter_chunks())) == 2  # the server sees both
    with SupabaseStore(supabase_rest.url, supabase_rest.anon_key, embedding_dim=DIM) as anon:
        assert [c.document_id for c in anon.iter_chunks()] == ["db.md"]
        assert set(anon.document_hashes()) == {"db.md"}
        for mode in ("vector", "text", "hybrid"):
            hits = anon.search(unit(1), "backups compressed zstd", k=5, mode=mode)
            assert [h.document_id for h in hits] == ["db.md"], mode


@pytest.mark.parametrize("kind", ["other-secret", "garbage"])
def test_wrong_key_is_refused_without_quoting_it(supabase_contract_store: SupabaseStore,
                                                 supabase_rest: PostgrestServer, kind: str) -> None:
    other = mint_key("service_role", secret="not-the-project-secret-0123456789abcdef")
    key = other if kind == "other-secret" else "sb_secret_not-a-real-key-0123456789"
    store = SupabaseStore(supabase_rest.url, key, embedding_dim=DIM)
    with pytest.raises(StoreConnectionError, match=r"refused the key in store\.key.*Project settings"
                       ) as refused:
        store.migrate()
    assert key not in _full_text(refused.value)
    assert key[:20] not in _full_text(refused.value)
    store.close()


def test_gateway_style_refusal_is_a_connection_error() -> None:
    """Supabase's gateway answers a bad apikey itself, without a PostgREST code."""
    key = "sb_secret_some-key-value-0123456789"
    gateway = APIError({"message": "Invalid API key", "hint": "Double check your Supabase API key."})
    err = SupabaseStore("https://example.supabase.co", key, embedding_dim=DIM)._translate(gateway, "x")
    assert isinstance(err, StoreConnectionError) and "store.key" in str(err) and key not in str(err)


def test_unreachable_url_names_the_setting_not_the_key() -> None:
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    key = mint_key("service_role")
    store = SupabaseStore(f"http://127.0.0.1:{port}", key, embedding_dim=DIM, timeout=5)
    with pytest.raises(StoreConnectionError, match=r"store\.url=http://127\.0\.0\.1") as failed:
        store.migrate()
    assert key not in _full_text(failed.value)


def test_building_without_credentials_is_fine_until_used() -> None:
    store = SupabaseStore("", "", embedding_dim=DIM)  # what composing a config without secrets does
    with pytest.raises(StoreConnectionError, match=r"store\.url is empty"):
        store.status()
    with pytest.raises(StoreConnectionError, match=r"store\.key is empty"):
        SupabaseStore("https://example.supabase.co", "", embedding_dim=DIM).migrate()


def test_missing_schema_says_how_to_apply_it(supabase_rest: PostgrestServer) -> None:
    with SupabaseStore(supabase_rest.url, supabase_rest.service_key, embedding_dim=DIM) as store:
        with pytest.raises(SchemaMismatchError, match=r"promptly db sql.*SQL editor.*promptly db migrate"):
            store.migrate()
        status = store.status()
        assert status.embedding_dim is None and status.applied_migrations == ()
        assert status.pending_migrations == shipped_migrations() and status.chunks == 0
        with pytest.raises(SchemaMismatchError, match="promptly db sql"):
            store.document_hashes()


def test_other_dimension_is_refused(supabase_contract_store: SupabaseStore,
                                    supabase_rest: PostgrestServer) -> None:
    with SupabaseStore(supabase_rest.url, supabase_rest.service_key, embedding_dim=768) as other, \
            pytest.raises(SchemaMismatchError, match=r"vector\(384\).*768"):
        other.migrate()


def test_streams_page_past_the_page_size(supabase_contract_store: SupabaseStore,
                                         supabase_rest: PostgrestServer) -> None:
    store = supabase_contract_store
    store.page_size = 2
    store.upsert_document(*make_doc("a.md", [f"alpha {i}" for i in range(5)], 0))
    store.upsert_document(*make_doc("b.md", ["beta 0", "beta 1"], 10))
    store.upsert_qa_pairs([QAPair(f"q{i}?", "a", "a.md", "train") for i in range(3)])
    supabase_rest.requests.clear()

    got = list(store.iter_chunks())
    expected = [("a.md", i) for i in range(5)] + [("b.md", 0), ("b.md", 1)]
    assert [(c.document_id, c.ordinal) for c in got] == expected
    assert got[6].embedding is not None and got[6].embedding[11] == 1.0
    pages = [r for r in supabase_rest.requests if r.startswith("GET /rest/v1/chunks?")]
    assert len(pages) == 5 and "offset=6" in pages[3] and "limit=2" in pages[3]  # 2+2+2+1, then an empty page

    assert [c.ordinal for c in store.iter_chunks(document_ids=["a.md"], batch_size=1)] == [0, 1, 2, 3, 4]
    assert len(list(store.iter_qa_pairs(split="train"))) == 3
    assert set(store.document_hashes()) == set(store.document_hashes(source="test")) == {"a.md", "b.md"}
    assert store.document_hashes(source="elsewhere") == {}
    status = store.status()
    assert (status.documents, status.chunks, status.qa_pairs) == (2, 7, 3)


def test_server_answers_like_postgrest(supabase_contract_store: SupabaseStore,
                                       supabase_rest: PostgrestServer) -> None:
    rest = f"{supabase_rest.url}/rest/v1"
    anon = {"apikey": supabase_rest.anon_key, "Authorization": f"Bearer {supabase_rest.anon_key}"}
    with httpx.Client() as http:
        missing = http.get(f"{rest}/documents")
        assert missing.status_code == 401 and missing.json()["code"] == "PGRST301"
        assert http.get(f"{rest}/nope", headers=anon).json()["code"] == "PGRST205"
        assert http.post(f"{rest}/rpc/nope", headers=anon, json={}).status_code == 404
        denied = http.post(f"{rest}/documents", headers=anon, json={"id": "x", "source": "s", "uri": "u",
                                                                    "title": "t", "content_hash": "h"})
        assert denied.status_code == 401 and denied.json()["code"] == "42501"
        counted = http.head(f"{rest}/chunks", headers={**anon, "Prefer": "count=exact"})
        assert counted.status_code == 200 and counted.headers["Content-Range"] == "*/0"


def test_conversations_over_rest(supabase_contract_store: SupabaseStore, supabase_rest: PostgrestServer) -> None:
    """The anon key records conversations and feedback but cannot read them; the service key reads."""
    anon = SupabaseStore(supabase_rest.url, supabase_rest.anon_key, embedding_dim=384)
    service = supabase_contract_store
    liked = anon.add_conversation("Which port?", "Port 8080.", model_version="v1")
    disliked = anon.add_conversation("Which flag?", "--force.")
    assert anon.set_feedback(liked, "up") and anon.set_feedback(disliked, "down")
    with pytest.raises(StoreConnectionError, match="conversations"):  # anon has no read grant at all
        list(anon.iter_conversations())
    assert [c.question for c in service.iter_conversations(feedback="up")] == ["Which port?"]
    assert {c.id for c in service.iter_conversations()} == {liked, disliked}
