"""Retrieval quality on real documentation that is not ours: 166 pages of Python 3.11's HTML docs.

Corpus: Debian's `python3-doc` package (`make bench-retrieval` installs it, or `apt-get install -y
python3-doc`); the pages listed in benchmarks/data/python_docs_pages.txt are copied under --state and
ingested with promptly's own code (HTML loader, token chunker with context, MiniLM, embedded Postgres).
The store stays under --state, so a rerun re-embeds nothing unless the ingest settings changed.

Questions: benchmarks/data/python_docs_questions.jsonl, written by hand before any tuning, each answered
by one page; `held_out` ones were never looked at while tuning. A question is a hit at k when its page is
among the documents of the top k chunks; MRR uses the rank of the page's first chunk (top 10).

Baseline, in the same run: plain BM25 (bm25s, English stop words, Snowball stemmer) over the same chunks'
text. `--tune` grid-searches the hybrid fusion parameters on the questions that are not held out.
The last line is `default_recall5=<r> default_mrr=<m> bm25_recall5=<r>` on the held-out questions.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from promptly.data.config import RetrievalConfig
from promptly.ingest.chunking import TokenChunker
from promptly.ingest.documents import SourceConfig, load_source
from promptly.ingest.embedding import Embedder
from promptly.ingest.sync import sync_documents
from promptly.records import SearchMode
from promptly.store.embedded import EmbeddedPostgresStore

DOCS = Path("/usr/share/doc/python3.11/html")
DATA = Path(__file__).resolve().parent / "data"
MODES: tuple[SearchMode, ...] = ("vector", "text", "hybrid")
DEPTH = 10

Ranker = Callable[[int], list[str]]
"""Question index -> document ids of the top DEPTH chunks, best first."""


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    page: str
    held_out: bool


@dataclass(frozen=True)
class Scores:
    recall1: float
    recall5: float
    mrr: float

    def row(self, name: str, n: int) -> str:
        return f"| {name:<34} | {n:>3} | {self.recall1:.3f} | {self.recall5:.3f} | {self.mrr:.3f} |"


def load_questions() -> list[Question]:
    rows = [json.loads(line) for line in (DATA / "python_docs_questions.jsonl").read_text().splitlines() if line]
    return [Question(r["id"], r["question"], r["page"], bool(r["held_out"])) for r in rows]


def prepare_corpus(state: Path) -> Path:
    """Copy the listed pages under state/corpus (page paths kept: they are the document ids)."""
    if not DOCS.is_dir():
        sys.exit(f"the corpus is not installed: {DOCS} is missing. Run `make bench-retrieval` or "
                 "`apt-get install -y python3-doc` (Debian/Ubuntu), then run this again.")
    pages = [p for p in (DATA / "python_docs_pages.txt").read_text().splitlines() if p and not p.startswith("#")]
    corpus = state / "corpus"
    for page in pages:
        src, dest = DOCS / page, corpus / page
        if not src.is_file():
            sys.exit(f"{src} is missing: python3-doc is not the 3.11 documentation this benchmark expects")
        if not dest.is_file() or dest.stat().st_size != src.stat().st_size:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
    return corpus


def ingest(corpus: Path, store: EmbeddedPostgresStore, embedder: Embedder, context: bool) -> None:
    chunker = TokenChunker(chunk_tokens=200, overlap_tokens=32, context=context)
    fingerprint = f"{chunker.fingerprint()};embedder={embedder.model_name};doc_prefix={embedder.document_prefix}"
    store.migrate()
    report = sync_documents(load_source(SourceConfig(path=str(corpus), name="python-docs"), fingerprint),
                            store, chunker, embedder, cleanup="full",
                            on_progress=lambda _: None)
    print(f"ingest: {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
          f"{report.chunks_written} chunks written in {report.seconds:.0f} s", flush=True)
    if report.failed:
        sys.exit(f"ingest failed for {[f.path for f in report.failed]}")


def score(ranker: Ranker, questions: Sequence[Question], indices: Sequence[int]) -> Scores:
    r1 = r5 = rr = 0.0
    for i in indices:
        docs = ranker(i)
        gold = questions[i].page
        r1 += docs[:1] == [gold]
        r5 += gold in docs[:5]
        rr += 1.0 / (docs.index(gold) + 1) if gold in docs else 0.0
    n = max(len(indices), 1)
    return Scores(r1 / n, r5 / n, rr / n)


def store_ranker(store: EmbeddedPostgresStore, questions: Sequence[Question], vectors: np.ndarray,
                 mode: SearchMode, **fusion: float | int) -> Ranker:
    cache: dict[int, list[str]] = {}

    def rank(i: int) -> list[str]:
        if i not in cache:
            hits = store.search(vectors[i], questions[i].question, k=DEPTH, mode=mode, **fusion)  # type: ignore[arg-type]
            cache[i] = [h.document_id for h in hits]
        return cache[i]
    return rank


def bm25_ranker(store: EmbeddedPostgresStore, questions: Sequence[Question]) -> Ranker:
    import bm25s
    import Stemmer

    chunks = list(store.iter_chunks())
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([c.content for c in chunks], stopwords="en", stemmer=stemmer,
                                   show_progress=False), show_progress=False)
    tokens = bm25s.tokenize([q.question for q in questions], stopwords="en", stemmer=stemmer, show_progress=False)
    results, _ = retriever.retrieve(tokens, k=DEPTH, show_progress=False, n_threads=1)
    return lambda i: [chunks[int(j)].document_id for j in results[i]]


def tune(store: EmbeddedPostgresStore, questions: Sequence[Question], vectors: np.ndarray,
         tuning: Sequence[int]) -> dict[str, float | int]:
    """Grid search of the hybrid fusion parameters on the tuning questions (MRR, then recall@5)."""
    best: tuple[tuple[float, float], dict[str, float | int]] | None = None
    grid = itertools.product([10, 30, 60], [1.0], [0.5, 0.75, 1.0, 1.5], [20, 40])
    for rrf_k, text_w, vector_w, candidates in grid:
        params: dict[str, float | int] = {"rrf_k": rrf_k, "full_text_weight": text_w,
                                          "semantic_weight": vector_w, "candidates": candidates}
        s = score(store_ranker(store, questions, vectors, "hybrid", **params), questions, tuning)
        print(f"tune {params}: recall@5={s.recall5:.3f} mrr={s.mrr:.3f}", flush=True)
        key = (s.mrr, s.recall5)
        if best is None or key > best[0]:
            best = (key, params)
    assert best is not None
    return best[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state", type=Path, default=Path(".promptly/bench/retrieval"))
    parser.add_argument("--no-context", action="store_true", help="ingest without title/heading context")
    parser.add_argument("--tune", action="store_true", help="grid-search fusion on the non-held-out questions")
    args = parser.parse_args()
    corpus = prepare_corpus(args.state)
    embedder = Embedder()
    store = EmbeddedPostgresStore(args.state / ("pg-nocontext" if args.no_context else "pg"),
                                  embedding_dim=embedder.dimension)
    try:
        ingest(corpus, store, embedder, context=not args.no_context)
        questions = load_questions()
        vectors = embedder.embed_queries([q.question for q in questions])
        subsets = {"tuning": [i for i, q in enumerate(questions) if not q.held_out],
                   "held-out": [i for i, q in enumerate(questions) if q.held_out],
                   "all": list(range(len(questions)))}
        if args.tune:
            print(f"best fusion on the tuning questions: {tune(store, questions, vectors, subsets['tuning'])}")
        default_mode = str(RetrievalConfig().mode.value)
        rankers = {f"promptly {m}" + (" (default)" if m == default_mode else ""):
                   store_ranker(store, questions, vectors, m) for m in MODES}
        rankers["BM25 baseline (bm25s)"] = bm25_ranker(store, questions)
        results: dict[tuple[str, str], Scores] = {}
        for subset, indices in subsets.items():
            print(f"\n{subset} questions ({len(indices)})\n| {'search':<34} |   n | r@1   | r@5   | MRR   |")
            for name, ranker in rankers.items():
                results[name, subset] = score(ranker, questions, indices)
                print(results[name, subset].row(name, len(indices)))
    finally:
        store.close()
    default = results[f"promptly {default_mode} (default)", "held-out"]
    bm25 = results["BM25 baseline (bm25s)", "held-out"]
    print(f"default_recall5={default.recall5:.3f} default_mrr={default.mrr:.3f} bm25_recall5={bm25.recall5:.3f}")


if __name__ == "__main__":
    main()
