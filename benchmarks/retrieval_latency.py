"""Latency of `search` per mode on stores of 10,000 and 100,000 chunks.

The stores hold synthetic chunks: unit vectors (clustered, as real embeddings are, so that HNSW has
work to do) and generated text of ~150 words drawn from a Zipf-distributed vocabulary of made-up words.
Queries are 3-7 words drawn the same way (so common words match a large part of the store) with a random
unit vector; a second set is shaped like real questions (see `questions`), which name rarer words.
Each mode's p50 and p99 are measured over the same queries, one call at a time, after a warm-up; the
query embedding is not part of them: the packaged MiniLM's time per query is measured and reported on
its own. Stores are kept under --state (default .promptly/bench/latency) and
reused when already filled, so only the first run pays for building them.

The last line is `vector_p99_ms_100k=<ms> hybrid_p99_ms_100k=<ms>`; the goals are <= 20 ms and <= 50 ms.
"""

from __future__ import annotations

import argparse
import io
import os
import time
from pathlib import Path

import numpy as np

from promptly.records import SearchMode
from promptly.store.embedded import EmbeddedPostgresStore

DIM = 384
MODES: tuple[SearchMode, ...] = ("vector", "text", "hybrid")
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "do", "fi", "gu", "ha", "je", "bo",
             "ri", "tu", "mo", "la", "ne", "xi", "yo", "we", "qu", "ce", "di", "fo", "go", "hu"]


STOP_WORDS = (
    "the", "of", "and", "to", "a", "in", "is", "it", "that", "for", "on", "with", "as", "was", "this",
    "by", "be", "are", "at", "from", "or", "an", "not", "which", "but", "have", "has", "can", "if", "will",
    "all", "they", "their", "there", "so", "more", "when", "what", "one", "other", "these", "into", "about",
    "than", "then", "each", "some", "only", "also", "such", "how", "its", "do", "may", "any", "would",
    "most", "over", "both", "between", "after", "before", "where", "while", "same", "through", "under",
    "very", "just", "those", "own", "again", "few", "further", "once", "here", "why",
)
"""The most frequent ranks are English stop words, as in real text: Postgres drops them from the index."""


def vocabulary(size: int, rng: np.random.Generator) -> list[str]:
    """Stop words first, then distinct made-up words of 2-4 syllables (real-looking, so the English
    stemmer treats them as words), in frequency-rank order."""
    words: set[str] = set()
    while len(words) < size:
        n = int(rng.integers(2, 5))
        words.add("".join(SYLLABLES[i] for i in rng.integers(0, len(SYLLABLES), n)))
    stops = list(STOP_WORDS)
    return stops + sorted(words - set(stops))


def zipf_probabilities(size: int, s: float = 1.05) -> np.ndarray:
    p = 1.0 / np.arange(1, size + 1) ** s
    return p / p.sum()


def fill(store: EmbeddedPostgresStore, n: int, seed: int = 0) -> None:
    """Write n synthetic chunks (in documents of 20) with COPY, unless the store already holds them."""
    store.migrate()
    row = store.conn.execute("select count(*) from chunks").fetchone()
    store.conn.commit()
    if row and row[0] == n:
        vacuum(store)  # a migration may just have filled new tables (0011's postings)
        return
    rng = np.random.default_rng(seed)
    vocab = vocabulary(20_000, rng)
    probs = zipf_probabilities(len(vocab))
    centers = rng.normal(size=(256, DIM)).astype(np.float32)
    with store.conn.transaction():
        store.conn.execute("truncate documents, chunks cascade")
        docs = n // 20
        with store.conn.cursor().copy("copy documents (id, source, uri, title, content_hash) from stdin") as copy:
            for d in range(docs):
                copy.write_row((f"doc{d}", "synthetic", f"synthetic://{d}", f"document {d}", str(d)))
    started = time.perf_counter()
    with store.conn.transaction():  # one HNSW build after the load is much faster than 100k inserts into it
        store.conn.execute("drop index if exists chunks_embedding_hnsw")
    for start in range(0, n, 10_000):
        size = min(10_000, n - start)
        words = rng.choice(len(vocab), size=(size, 150), p=probs)
        vectors = centers[rng.integers(0, len(centers), size)] + rng.normal(scale=0.6, size=(size, DIM))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        buf = io.StringIO()
        for i in range(size):
            ordinal = (start + i) % 20
            doc = (start + i) // 20
            text = " ".join(vocab[w] for w in words[i])
            vec = "[" + ",".join(f"{x:.5f}" for x in vectors[i]) + "]"
            uid = f"{start + i:032x}"
            buf.write(f"{uid}\tdoc{doc}\t{ordinal}\t{text}\t150\t{{}}\t{vec}\n")
        with store.conn.transaction():
            cur = store.conn.cursor()
            with cur.copy("copy chunks (id, document_id, ordinal, content, token_count, metadata, embedding)"
                          " from stdin") as copy:
                copy.write(buf.getvalue())
        print(f"  {start + size}/{n} chunks written ({time.perf_counter() - started:.0f} s)", flush=True)
    store.conn.execute("set maintenance_work_mem = '1GB'")
    store.conn.execute("create index chunks_embedding_hnsw on chunks using hnsw (embedding vector_cosine_ops)")
    store.conn.commit()
    vacuum(store)
    print(f"  indexed ({time.perf_counter() - started:.0f} s)", flush=True)


def vacuum(store: EmbeddedPostgresStore) -> None:
    """What autovacuum does after a bulk load: fresh planner statistics, and a visibility map, so that
    ranking reads the postings index alone (index-only scans)."""
    store.conn.autocommit = True
    try:
        for table in ("chunks", "fts_postings", "fts_lexemes"):
            store.conn.execute(f"vacuum analyze {table}")
    finally:
        store.conn.autocommit = False


def queries(n: int, seed: int = 1) -> list[tuple[list[float], str]]:
    """Words drawn like the text's (Zipf): mostly stop words and common words, seldom a rare one."""
    rng = np.random.default_rng(seed)
    vocab = vocabulary(20_000, np.random.default_rng(0))
    probs = zipf_probabilities(len(vocab))
    out = []
    for _ in range(n):
        words = rng.choice(len(vocab), size=int(rng.integers(3, 8)), p=probs)
        v = rng.normal(size=DIM).astype(np.float32)
        out.append(((v / np.linalg.norm(v)).tolist(), " ".join(vocab[w] for w in words)))
    return out


def questions(n: int, seed: int = 3) -> list[tuple[list[float], str]]:
    """Shaped like real questions (measured on benchmarks/retrieval_quality.py's 148 questions over the
    Python docs: a median of 6.5 lexemes, whose document frequencies add up to 39 % of the chunks, and
    nearly always one rare lexeme, df < 1 %): 2-4 stop words, 3-6 words from the 2,000 most frequent
    ones (drawn by frequency) and 1-2 from the rest of the vocabulary (drawn uniformly)."""
    rng = np.random.default_rng(seed)
    vocab = vocabulary(20_000, np.random.default_rng(0))
    common = len(STOP_WORDS) + 2_000
    probs = zipf_probabilities(common)[len(STOP_WORDS):]
    probs = probs / probs.sum()
    out = []
    for _ in range(n):
        words = [*rng.choice(len(STOP_WORDS), size=int(rng.integers(2, 5))),
                 *(len(STOP_WORDS) + rng.choice(len(probs), size=int(rng.integers(3, 7)), p=probs)),
                 *rng.integers(common, len(vocab), size=int(rng.integers(1, 3)))]
        rng.shuffle(words)
        v = rng.normal(size=DIM).astype(np.float32)
        out.append(((v / np.linalg.norm(v)).tolist(), " ".join(vocab[w] for w in words)))
    return out


QUERY_SETS = {"zipf": queries, "questions": questions}


def percentiles(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50)), float(np.percentile(samples, 99))


def measure(store: EmbeddedPostgresStore, n_queries: int, k: int,
            query_set: str = "zipf") -> dict[str, tuple[float, float]]:
    qs = QUERY_SETS[query_set](n_queries)
    out: dict[str, tuple[float, float]] = {}
    for mode in MODES:
        for vector, text in qs[:20]:  # warm-up: plans cached, pages in memory
            store.search(vector, text, k=k, mode=mode)
        times = []
        for vector, text in qs:
            started = time.perf_counter()
            store.search(vector, text, k=k, mode=mode)
            times.append((time.perf_counter() - started) * 1000)
        out[mode] = percentiles(times)
    return out


def embedding_ms(n: int = 50) -> tuple[float, float]:
    from promptly.ingest.embedding import Embedder

    embedder = Embedder()
    _ = embedder.model
    qs = [text for _, text in queries(n, seed=2)]
    embedder.embed_query(qs[0])
    times = []
    for text in qs:
        started = time.perf_counter()
        embedder.embed_query(text)
        times.append((time.perf_counter() - started) * 1000)
    return percentiles(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200, help="timed queries per mode")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--no-question-queries", dest="question_queries", action="store_false",
                        help="skip the second query set, shaped like real questions")
    parser.add_argument("--state", type=Path, default=Path(".promptly/bench/latency"))
    args = parser.parse_args()
    p50, p99 = embedding_ms()
    print(f"query embedding (packaged MiniLM, one query): p50={p50:.1f} ms p99={p99:.1f} ms", flush=True)
    results = {}
    for n in args.sizes:
        store = EmbeddedPostgresStore(args.state / f"pg-{n}", embedding_dim=DIM)
        try:
            fill(store, n)
            load = os.getloadavg()
            results[n] = measure(store, args.queries, args.k)
            for mode, (p50, p99) in results[n].items():
                print(f"[{n} chunks] {mode:>6}: p50={p50:.1f} ms p99={p99:.1f} ms", flush=True)
            if args.question_queries:
                for mode, (p50, p99) in measure(store, args.queries, args.k, "questions").items():
                    print(f"[{n} chunks, question-shaped queries] {mode:>6}: p50={p50:.1f} ms p99={p99:.1f} ms",
                          flush=True)
            print(f"[{n} chunks] load average before/after: {load[0]:.2f} / {os.getloadavg()[0]:.2f}"
                  f" ({os.cpu_count()} CPUs)", flush=True)
        finally:
            store.close()
    largest = max(args.sizes)
    label = f"{largest // 1000}k"
    print(f"vector_p99_ms_{label}={results[largest]['vector'][1]:.1f} "
          f"hybrid_p99_ms_{label}={results[largest]['hybrid'][1]:.1f}")


if __name__ == "__main__":
    main()
