"""Owner visibility keeps the indexes the ranking lives on (migration 0012): with a viewer, vector search still
scans the HNSW index (iteratively, past other owners' rows), text search still reads only the postings index,
and whether any chunk has an owner is answered by the GIN index on metadata, never a scan of the chunks."""

from __future__ import annotations

import numpy as np
import psycopg

from promptly.records import SearchMode
from promptly.store.postgres import PostgresStore

from .conftest import DIM
from .test_retrieval_explain import assert_postings_ranking


def viewer_plans(conn: psycopg.Connection, mode: SearchMode, text: str, vector: np.ndarray,
                 viewer: str) -> tuple[str, list[tuple[str, str]]]:
    """The nested plans of one match_chunks call with a viewer, and its rows (document id, owner)."""
    notices: list[str] = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    conn.execute("load 'auto_explain'")
    for setting in ("log_min_duration = 0", "log_nested_statements = on", "log_level = notice"):
        conn.execute(f"set auto_explain.{setting}")
    rows = conn.execute("select document_id, coalesce(metadata->>'owner', '') from match_chunks("
                        "%s::vector, %s, 5, '{}'::jsonb, %s, viewer => %s)", (vector, text, mode, viewer)).fetchall()
    conn.rollback()
    plans = "\n".join(line for n in notices for line in n.splitlines() if "Query Parameters" not in line)
    return plans, [(r[0], r[1]) for r in rows]


def ranking_plans(plans: str) -> str:
    """The plans without the one-row check whether any chunk has an owner: where many do, a sequential scan
    that stops at the first is its cheapest plan (the no-owner case is tested on its own, below)."""
    return "duration:".join(block for block in plans.split("duration:") if "_scoped :=" not in block)


def alice_vector(store: PostgresStore) -> np.ndarray:
    """A query vector at one of alice's chunks: her rows are its nearest neighbours."""
    row = store.conn.execute("select embedding from chunks where metadata->>'owner' = 'alice' limit 1").fetchone()
    store.conn.rollback()
    assert row is not None
    return np.asarray(row[0].to_numpy() if hasattr(row[0], "to_numpy") else row[0], dtype=np.float32)


def test_vector_and_hybrid_search_with_a_viewer_still_scan_the_hnsw_index(owned_store: PostgresStore) -> None:
    vector = alice_vector(owned_store)
    plans, rows = viewer_plans(owned_store.conn, "vector", "", vector, "bob")
    assert "Index Scan using chunks_embedding_hnsw" in plans, plans
    assert "Seq Scan on chunks" not in ranking_plans(plans), plans
    assert len(rows) == 5 and all(owner == "" for _, owner in rows), rows
    _, mine = viewer_plans(owned_store.conn, "vector", "", vector, "alice")
    assert mine[0][1] == "alice"

    plans, rows = viewer_plans(owned_store.conn, "hybrid", "proxy backup", vector, "bob")
    assert "Index Scan using chunks_embedding_hnsw" in plans, plans
    assert_postings_ranking(ranking_plans(plans))
    assert len(rows) == 5 and all(owner == "" for _, owner in rows), rows


def test_text_search_with_a_viewer_reads_only_the_postings_index_and_probes_candidates(
        owned_store: PostgresStore) -> None:
    """unique17 is in alice's chunk 17, unique2000 in a public one: an anonymous viewer finds only the latter."""
    vector = alice_vector(owned_store)
    for text, found in (("unique17 unique2000", 1), ("proxy backup unique17", 5), ("proxy", 5)):
        plans, rows = viewer_plans(owned_store.conn, "text", text, vector, "")
        assert_postings_ranking(ranking_plans(plans))
        assert "Index Scan using chunks_pkey on chunks c" in plans, plans  # one probe per candidate
        assert len(rows) == found and all(owner == "" for _, owner in rows), (text, rows)


def test_a_store_without_owners_answers_the_owner_check_from_the_gin_index(big_store: PostgresStore) -> None:
    plans, rows = viewer_plans(big_store.conn, "text", "proxy backup", np.zeros(DIM, dtype=np.float32), "")
    assert "chunks_metadata_gin" in plans, plans
    assert_postings_ranking(plans)
    assert len(rows) == 5
