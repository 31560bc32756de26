"""BM25 inside Postgres (migration 0007) against bm25s, and its statistics under incremental writes."""

from __future__ import annotations

import bm25s
import numpy as np
import psycopg
import pytest

from promptly.records import Chunk, Document, sha256_hex
from promptly.store.postgres import PostgresStore

from .conftest import DIM

ZERO = (0.0,) * DIM

TEXTS = {
    "net.md": ["The proxy listens on port 8080 and forwards every request to the upstream servers.",
               "Timeouts are set in seconds; a request that times out is retried twice by the proxy."],
    "db.md": ["Backups are compressed with zstd and uploaded to object storage every night.",
              "Replicas follow the primary; a replica that falls behind is rebuilt from the last backup.",
              "Backups older than thirty days are deleted, except the monthly backups."],
    "cli.md": ["Run the server with the --port option to listen on another port.",
               "The CLI prints its version with --version and exits."],
}
QUERIES = ["how are backups compressed", "which port does the proxy listen on", "retried requests timeout",
           "delete old monthly backups from storage"]


def write(store: PostgresStore, doc_id: str, texts: list[str], context: str = "") -> None:
    body = "\n\n".join(texts)
    doc = Document(id=doc_id, text=body, title=doc_id, source="test", uri=f"file://{doc_id}",
                   content_hash=sha256_hex(body))
    rng = np.random.default_rng(len(body))
    chunks = [Chunk(document_id=doc_id, ordinal=i, content=t, token_count=len(t.split()),
                    metadata={"document_id": doc_id, **({"context": context} if context else {})},
                    embedding=tuple(float(x) for x in rng.normal(size=DIM)))
              for i, t in enumerate(texts)]
    store.upsert_document(doc, chunks)


def postgres_tokens(store: PostgresStore) -> dict[str, list[str]]:
    """Each chunk's lexemes, repeated as often as they occur: the token lists bm25s indexes."""
    rows = store.conn.execute(
        "select c.id::text, u.lexeme, coalesce(array_length(u.positions, 1), 1)"
        " from chunks c, unnest(c.fts) as u order by c.id, u.lexeme").fetchall()
    store.conn.commit()
    tokens: dict[str, list[str]] = {}
    for chunk_id, lexeme, count in rows:
        tokens.setdefault(chunk_id, []).extend([lexeme] * count)
    return tokens


def query_lexemes(store: PostgresStore, text: str) -> list[str]:
    row = store.conn.execute("select tsvector_to_array(to_tsvector('english', %s))", (text,)).fetchone()
    store.conn.commit()
    return list(row[0]) if row else []


def reference_scores(store: PostgresStore, query: str, k1: float = 1.2, b: float = 0.75) -> dict[str, float]:
    """bm25s (Lucene's BM25, its default) over the same lexemes; chunks that match nothing left out."""
    tokens = postgres_tokens(store)
    ids = sorted(tokens)
    retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
    retriever.index([tokens[i] for i in ids], show_progress=False)
    vocab = retriever.vocab_dict
    lexemes = [t for t in query_lexemes(store, query) if t in vocab]
    scores = retriever.get_scores(lexemes) if lexemes else np.zeros(len(ids))
    return {ids[j]: float(scores[j]) for j in range(len(ids)) if scores[j] > 0}


def text_scores(store: PostgresStore, query: str, **kwargs: float) -> dict[str, float]:
    hits = store.search(ZERO, query, k=100, mode="text", **kwargs)  # type: ignore[arg-type]
    return {h.chunk_id: h.score for h in hits}


def assert_same_scores(got: dict[str, float], want: dict[str, float]) -> None:
    assert set(got) == set(want)
    for chunk_id, score in want.items():
        assert got[chunk_id] == pytest.approx(score, rel=1e-5), chunk_id


def fts_statistics(store: PostgresStore) -> tuple[dict[str, int], tuple[int, int]]:
    lexemes = dict(store.conn.execute("select lexeme, df from fts_lexemes").fetchall())
    row = store.conn.execute("select chunks, tokens from fts_corpus").fetchone()
    store.conn.commit()
    assert row is not None
    return lexemes, (int(row[0]), int(row[1]))


def recount(store: PostgresStore) -> tuple[dict[str, int], tuple[int, int]]:
    """The statistics counted from scratch, straight from the chunks (no trigger involved)."""
    tokens = postgres_tokens(store)
    df: dict[str, int] = {}
    for toks in tokens.values():
        for lexeme in set(toks):
            df[lexeme] = df.get(lexeme, 0) + 1
    return df, (len(tokens), sum(len(t) for t in tokens.values()))


@pytest.mark.parametrize("query", QUERIES)
def test_text_mode_scores_equal_bm25s(pg_store: PostgresStore, query: str) -> None:
    for doc_id, texts in TEXTS.items():
        write(pg_store, doc_id, texts)
    want = reference_scores(pg_store, query)
    assert want, "the query should match something"
    assert_same_scores(text_scores(pg_store, query), want)
    ranked = [h.chunk_id for h in pg_store.search(ZERO, query, k=3, mode="text")]
    assert ranked == sorted(want, key=lambda i: (-want[i], i))[:3]


def test_bm25_parameters_reach_the_ranking(pg_store: PostgresStore) -> None:
    for doc_id, texts in TEXTS.items():
        write(pg_store, doc_id, texts)
    query = QUERIES[0]
    got = pg_store.conn.execute(
        "select id::text, score from match_chunks(%s::vector, %s, 100, '{}'::jsonb, 'text', bm25_k1 => 2.0,"
        " bm25_b => 0.3)", (np.zeros(DIM, dtype=np.float32), query)).fetchall()
    pg_store.conn.commit()
    assert_same_scores(dict(got), reference_scores(pg_store, query, k1=2.0, b=0.3))


def test_statistics_stay_exact_under_edits_deletes_and_truncate(pg_store: PostgresStore) -> None:
    for doc_id, texts in TEXTS.items():
        write(pg_store, doc_id, texts)
    assert fts_statistics(pg_store) == recount(pg_store)
    write(pg_store, "db.md", ["Backups are encrypted now.", "Snapshots replace replicas."])  # edited
    assert fts_statistics(pg_store) == recount(pg_store)
    write(pg_store, "net.md", TEXTS["net.md"], context="Networking > Proxy")  # same text, new context
    assert fts_statistics(pg_store) == recount(pg_store)
    pg_store.delete_documents(["cli.md"])
    assert fts_statistics(pg_store) == recount(pg_store)
    assert_same_scores(text_scores(pg_store, "proxy backups"), reference_scores(pg_store, "proxy backups"))
    with pg_store.conn.transaction():
        pg_store.conn.execute("update chunks set content = content || ' zstd' where ordinal = 0")
    assert fts_statistics(pg_store) == recount(pg_store)
    pg_store.delete_documents(["db.md", "net.md"])
    assert fts_statistics(pg_store) == ({}, (0, 0))
    write(pg_store, "cli.md", TEXTS["cli.md"])
    with pg_store.conn.transaction():
        pg_store.conn.execute("truncate documents, chunks cascade")
    assert fts_statistics(pg_store) == ({}, (0, 0))


def test_context_is_indexed_for_text_search(pg_store: PostgresStore) -> None:
    write(pg_store, "a.md", ["It listens on 8080."], context="Proxy guide > Ports")
    write(pg_store, "b.md", ["It listens on 9090."])
    hits = pg_store.search(ZERO, "proxy ports", k=5, mode="text")
    assert [h.document_id for h in hits] == ["a.md"]


# -- migration 0011: postings and exact top-k pruning ---------------------------------------------------------
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "do", "fi", "gu", "ha", "je", "bo"]


def zipf_corpus(n_docs: int = 40, per_doc: int = 10, seed: int = 0) -> tuple[dict[str, list[str]], list[str]]:
    """Chunks of 5-80 words from a Zipf-distributed vocabulary of 400 made-up words (a few very common, most
    rare, as in real text), and the vocabulary in frequency order."""
    rng = np.random.default_rng(seed)
    words: list[str] = []
    while len(words) < 400:
        w = "".join(rng.choice(SYLLABLES, size=int(rng.integers(2, 4))))
        if w not in words:
            words.append(w)
    p = 1.0 / np.arange(1, len(words) + 1) ** 1.1
    p /= p.sum()
    corpus = {f"z{d}.md": [" ".join(rng.choice(words, size=int(rng.integers(5, 81)), p=p)) for _ in range(per_doc)]
              for d in range(n_docs)}
    return corpus, words


def pruned_and_full(store: PostgresStore, query: str, k: int) -> tuple[list[tuple[str, float]], list[tuple[str, float]],
                                                                        list[str]]:
    """The top k as match_chunks returns it, the full ranking (every posting scored), and the debug lines
    promptly_bm25 left saying whether it pruned."""
    notices: list[str] = []
    conn = store.conn

    def keep(diagnostic: psycopg.errors.Diagnostic) -> None:
        notices.append(diagnostic.message_primary or "")

    conn.add_notice_handler(keep)
    conn.execute("set client_min_messages = debug1")
    top = conn.execute("select id::text, score from match_chunks(%s::vector, %s, %s, '{}'::jsonb, 'text')",
                       (np.zeros(DIM, dtype=np.float32), query, k)).fetchall()
    conn.execute("set client_min_messages = notice")
    full = conn.execute("select id::text, score from promptly_bm25(%s, 100000, '{}'::jsonb)", (query,)).fetchall()
    conn.commit()
    conn.remove_notice_handler(keep)
    return top, full, [n for n in notices if n.startswith("promptly_bm25")]


def assert_exact_top_k(store: PostgresStore, queries: list[str], ks: tuple[int, ...] = (1, 5, 20)) -> int:
    """Every pruned top k is the full ranking's first k (same chunks, same order, same scores), and the full
    ranking is bm25s's; returns how many of the rankings were pruned."""
    pruned = 0
    for query in queries:
        want = reference_scores(store, query)
        for k in ks:
            top, full, debug = pruned_and_full(store, query, k)
            assert_same_scores(dict(full), want)
            assert [i for i, _ in top] == [i for i, _ in full[:k]], (query, k)
            assert [s for _, s in top] == pytest.approx([s for _, s in full[:k]], rel=1e-9)
            pruned += any("pruned" in line for line in debug)
    return pruned


def test_pruned_top_k_is_the_exact_top_k(pg_store: PostgresStore) -> None:
    """The ranking scores only the chunks that hold a rare query word when no other chunk can reach the top k
    (an upper bound per lexeme from its largest tf and tf / length); it must still be the exact top k."""
    corpus, words = zipf_corpus()
    for doc_id, texts in corpus.items():
        write(pg_store, doc_id, texts)
    rng = np.random.default_rng(1)
    queries = [" ".join([*rng.choice(words[:15], size=int(rng.integers(1, 4))),
                         *rng.choice(words[60:], size=int(rng.integers(0, 3)))]) for _ in range(25)]
    queries += [words[0], words[0] + " " + words[1], words[-1]]  # only common words; a single rare one
    pruned = assert_exact_top_k(pg_store, queries)
    assert pruned >= 20, "most queries with a rare word should be answered by pruning"

    # The bounds only grow on writes and go stale on deletes (looser, still upper bounds): still exact.
    for d in range(0, 40, 3):
        pg_store.delete_documents([f"z{d}.md"])
    edited, _ = zipf_corpus(n_docs=5, seed=7)
    for doc_id, texts in edited.items():
        write(pg_store, doc_id, texts)
    assert fts_statistics(pg_store) == recount(pg_store)
    assert postings(pg_store) == recount_postings(pg_store)
    assert assert_exact_top_k(pg_store, queries[:10], ks=(5,)) > 0


def postings(store: PostgresStore) -> set[tuple[str, str, int, int]]:
    rows = store.conn.execute("select lexeme, chunk_id::text, tf, dl from fts_postings").fetchall()
    store.conn.commit()
    return set(rows)


def recount_postings(store: PostgresStore) -> set[tuple[str, str, int, int]]:
    tokens = postgres_tokens(store)
    return {(lexeme, chunk_id, toks.count(lexeme), len(toks)) for chunk_id, toks in tokens.items()
            for lexeme in set(toks)}


def test_postings_and_bounds_stay_exact_under_edits_deletes_and_truncate(pg_store: PostgresStore) -> None:
    for doc_id, texts in TEXTS.items():
        write(pg_store, doc_id, texts)
    assert postings(pg_store) == recount_postings(pg_store)
    write(pg_store, "db.md", ["Backups are encrypted now.", "Snapshots replace replicas."])  # edited
    write(pg_store, "net.md", TEXTS["net.md"], context="Networking > Proxy")  # same text, new context
    pg_store.delete_documents(["cli.md"])
    with pg_store.conn.transaction():
        pg_store.conn.execute("update chunks set content = content || ' zstd zstd' where ordinal = 0")
    assert postings(pg_store) == recount_postings(pg_store)
    # each lexeme's bounds are at least its largest tf and tf / length in any chunk
    rows = pg_store.conn.execute(
        "select l.lexeme, l.max_tf >= max(p.tf) and l.max_ratio >= max(p.tf::float8 / p.dl)"
        " from fts_lexemes l join fts_postings p using (lexeme) group by l.lexeme, l.max_tf, l.max_ratio").fetchall()
    pg_store.conn.commit()
    assert rows and all(ok for _, ok in rows), [lexeme for lexeme, ok in rows if not ok]
    with pg_store.conn.transaction():
        pg_store.conn.execute("truncate documents, chunks cascade")
    assert postings(pg_store) == set()
