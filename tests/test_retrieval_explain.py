"""The plans match_chunks really runs: the vector ranking scans the HNSW index, the text ranking the postings.

Since migration 0011 the text (BM25) ranking reads the btree primary key of `fts_postings` (lexeme, chunk_id,
including tf and the chunk's length), by index-only scans: one range per query lexeme, and one probe per
candidate and common lexeme when it prunes. It no longer reads the chunks' heap, their tsvectors or the GIN
index on them (that index stays, for `@@` queries of users' own); a sequential scan of the chunks or of the
postings would mean the ranking cost grows with the whole store, which is what these tests guard against.

auto_explain logs the plan of every statement run inside the SQL function (nested statements), as a
notice sent to this client, so these are the plans of the function itself and not of a copy of its SQL.
"""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from promptly.records import SearchMode
from promptly.store.postgres import PostgresStore

from .conftest import DIM

ZERO = (0.0,) * DIM


def nested_plans(conn: psycopg.Connection, mode: SearchMode, text: str) -> str:
    notices: list[str] = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    conn.execute("load 'auto_explain'")
    for setting in ("log_min_duration = 0", "log_nested_statements = on", "log_level = notice"):
        conn.execute(f"set auto_explain.{setting}")
    vector = np.random.default_rng(1).normal(size=DIM).astype(np.float32)
    conn.execute("select * from match_chunks(%s::vector, %s, 5, '{}'::jsonb, %s)", (vector, text, mode)).fetchall()
    conn.rollback()
    return "\n".join(line for n in notices for line in n.splitlines() if "Query Parameters" not in line)


def test_vector_ranking_uses_the_hnsw_index(big_store: PostgresStore) -> None:
    plans = nested_plans(big_store.conn, "vector", "")
    assert "Index Scan using chunks_embedding_hnsw" in plans, plans


def assert_postings_ranking(plans: str) -> None:
    assert "Index Only Scan using fts_postings_pkey on fts_postings" in plans, plans
    assert "Seq Scan on fts_postings" not in plans and "Seq Scan on chunks" not in plans, plans
    assert "chunks_fts_gin" not in plans, plans


@pytest.mark.parametrize("text", ["unique17 unique2000", "proxy backup unique17", "proxy"])
def test_text_ranking_reads_only_the_postings_index(big_store: PostgresStore, text: str) -> None:
    assert_postings_ranking(nested_plans(big_store.conn, "text", text))


def test_hybrid_uses_both_indexes(big_store: PostgresStore) -> None:
    plans = nested_plans(big_store.conn, "hybrid", "unique17 unique2000")
    assert "Index Scan using chunks_embedding_hnsw" in plans, plans
    assert_postings_ranking(plans)
    hits = big_store.search(ZERO, "unique17", k=3, mode="text")
    assert [h.content.split()[-1] for h in hits] == ["unique17"]
