"""What owner visibility inside `match_chunks` (migration 0012) costs, and what it fixes.

A synthetic store of 10,000 public chunks (benchmarks/retrieval_latency.py's `fill`), then one user's upload of
7,604 chunks (the size of the 4.9 MB file in issue 21) written to match the timed queries better than any public
chunk: each query has ~76 of alice's chunks above every public one, in text and in vector ranking.

Printed per mode, p50 / p99 in ms over the question-shaped queries, one call at a time after a warm-up:
  before the upload: viewer None (no rule) and viewer '' (anonymous: the rule, nobody owns anything);
  after it:          viewer None, viewer 'bob', viewer 'alice';
and, after the upload, the fewest results bob got (k expected) next to what the removed Python overfetch would
have left him (top k + 8 of everyone's, alice's dropped).

    python benchmarks/owner_visibility.py [--queries 100] [--k 5] [--state .promptly/bench/owner]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from retrieval_latency import DIM, MODES, fill, percentiles, questions, vacuum

from promptly.store.embedded import EmbeddedPostgresStore

UPLOAD = "uploads/alice/big.txt"
OVERFETCH = 8  # the removed serve.private_overfetch default


def upload(store: EmbeddedPostgresStore, qs: list[tuple[list[float], str]], n: int = 7_604) -> None:
    """alice's chunks: for each query, n / len(qs) chunks of its words, with vectors right next to its vector."""
    rng = np.random.default_rng(7)
    buf = io.StringIO()
    for i in range(n):
        vector, text = qs[i % len(qs)]
        v = np.asarray(vector) + rng.normal(scale=0.02, size=DIM)
        v /= np.linalg.norm(v)
        uid = f"a{i:031x}"
        vec = "[" + ",".join(f"{x:.5f}" for x in v) + "]"
        buf.write(f"{uid}\t{UPLOAD}\t{i}\t{text} {text} note {i}\t30\t{{\"owner\": \"alice\"}}\t{vec}\n")
    with store.conn.transaction():
        store.conn.execute("delete from documents where id = %s", (UPLOAD,))
        store.conn.execute("insert into documents (id, source, uri, title, content_hash, metadata) values "
                           "(%s, 'uploads/alice', 'file://big.txt', 'big', 'h', '{\"owner\": \"alice\"}')",
                           (UPLOAD,))
        with store.conn.cursor().copy("copy chunks (id, document_id, ordinal, content, token_count, metadata,"
                                      " embedding) from stdin") as copy:
            copy.write(buf.getvalue())
    vacuum(store)


def timed(store: EmbeddedPostgresStore, qs: list[tuple[list[float], str]], k: int, mode: str,
          viewer: str | None) -> tuple[float, float, int]:
    """p50, p99 (ms) and the fewest results of one mode and viewer."""
    for vector, text in qs[:10]:
        store.search(vector, text, k=k, mode=mode, viewer=viewer)  # type: ignore[arg-type]
    times, fewest = [], k
    for vector, text in qs:
        started = time.perf_counter()
        hits = store.search(vector, text, k=k, mode=mode, viewer=viewer)  # type: ignore[arg-type]
        times.append((time.perf_counter() - started) * 1000)
        fewest = min(fewest, len(hits))
    p50, p99 = percentiles(times)
    return p50, p99, fewest


def overfetch_left(store: EmbeddedPostgresStore, qs: list[tuple[list[float], str]], k: int, mode: str) -> int:
    """The fewest public results the old path left: everyone's top k + 8, other owners' rows dropped after."""
    fewest = k
    for vector, text in qs:
        hits = store.search(vector, text, k=k + OVERFETCH, mode=mode)  # type: ignore[arg-type]
        fewest = min(fewest, len([h for h in hits if not h.document_id.startswith("uploads/")][:k]))
    return fewest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--state", type=Path, default=Path(".promptly/bench/owner"))
    args = parser.parse_args()
    store = EmbeddedPostgresStore(args.state / "pg", embedding_dim=DIM)
    try:
        fill(store, 10_000)
        with store.conn.transaction():
            store.conn.execute("delete from documents where id = %s", (UPLOAD,))
        vacuum(store)
        qs = questions(args.queries)
        print(f"{'mode':8} {'case':28} {'p50 ms':>8} {'p99 ms':>8} {'fewest':>7}")
        for mode in MODES:
            for viewer, case in ((None, "no upload, viewer None"), ("", "no upload, viewer ''")):
                p50, p99, fewest = timed(store, qs, args.k, mode, viewer)
                print(f"{mode:8} {case:28} {p50:8.2f} {p99:8.2f} {fewest:7d}", flush=True)
        started = time.perf_counter()
        upload(store, qs)
        print(f"upload of 7,604 chunks written and vacuumed in {time.perf_counter() - started:.1f} s")
        for mode in MODES:
            for viewer, case in ((None, "upload, viewer None"), ("bob", "upload, viewer 'bob'"),
                                 ("alice", "upload, viewer 'alice'")):
                p50, p99, fewest = timed(store, qs, args.k, mode, viewer)
                print(f"{mode:8} {case:28} {p50:8.2f} {p99:8.2f} {fewest:7d}", flush=True)
            print(f"{mode:8} {'upload, old k+8 overfetch':28} {'':>8} {'':>8} "
                  f"{overfetch_left(store, qs, args.k, mode):7d}", flush=True)
        with store.conn.transaction():
            store.conn.execute("delete from documents where id = %s", (UPLOAD,))
    finally:
        store.close()


if __name__ == "__main__":
    main()
