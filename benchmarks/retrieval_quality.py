"""Retrieval quality on documentation that is not ours: on the corpus the fusion was tuned on and on others.

Corpora (`--corpus`, repeatable; all by default), copied under --state and ingested with promptly's own code
(loader, token chunker with context, MiniLM, embedded Postgres):
- `python`: 166 pages of Python 3.11's HTML docs (Debian's `python3-doc`), 148 hand-written questions
  (benchmarks/data/python_docs_*), 44 held out. The hybrid fusion was chosen on the other 104 (`--tune`).
- `pip`: 53 Markdown/reStructuredText pages of pip 23.0.1's docs (Debian's `python3-pip`, some pages gzipped),
  38 answerable hand-written questions (benchmarks/data/pip_docs_*, written for issue 24's bring-your-own-docs
  experiment). Never tuned on: every answerable question is reported.
- `sample`: the packaged sample corpus (40 pages of eight made-up projects) and its 243 QA pairs' questions.
  Never tuned on; its questions share many words with their pages, which favours full-text search.
`make bench-retrieval` installs the Debian packages (or `apt-get install -y python3-doc python3-pip`). A corpus's
store stays under --state/<corpus>, so a rerun re-embeds nothing unless the ingest settings changed.

A question is a hit at k when its page is among the documents of the top k chunks; MRR uses the rank of the
page's first chunk (top 10). In the same run: the hybrid mode as it was before migration 0014 (`fusion=rrf`),
and plain BM25 (bm25s, English stop words, Snowball stemmer) over the same chunks' text as a baseline.
`--tune` grid-searches the convex fusion's weights and depth on python's tuning questions through match_chunks
(the selection rule is `tune`'s docstring); `--dump` writes each question's top vector and text candidates with
their scores, to try other fusions offline.

The last lines, one per corpus, on its reported questions (python: held out; the others: all):
`<corpus>: default_recall5=<r> default_mrr=<m> vector_.. text_.. bm25_.. rrf_.. goal=met|missed`
(goal, issue 24: the default mode >= max(vector, text) on recall@5 and on MRR).
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from promptly.data.config import RetrievalConfig
from promptly.ingest.chunking import TokenChunker
from promptly.ingest.documents import SourceConfig, load_source
from promptly.ingest.embedding import Embedder
from promptly.ingest.sync import sync_documents
from promptly.records import SearchHit, SearchMode
from promptly.store.embedded import EmbeddedPostgresStore

DATA = Path(__file__).resolve().parent / "data"
SAMPLE = Path(__file__).resolve().parents[1] / "promptly" / "_sample_data"
MODES: tuple[SearchMode, ...] = ("vector", "text", "hybrid")
DEPTH = 10
POOL = 40
"""Candidates per ranking that --dump writes (the tuning grid's largest `candidates`)."""
BEFORE = "promptly hybrid, fusion=rrf (before)"
"""The default of migrations 0007-0013: reciprocal rank fusion, rrf_k 10, weights 1.0 / 0.75, 20 candidates."""

Ranker = Callable[[int], list[str]]
"""Question index -> document ids of the top DEPTH chunks, best first."""


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    page: str
    held_out: bool


@dataclass(frozen=True)
class Corpus:
    """A documentation package's pages and the questions written on them."""

    name: str
    docs: Path
    """Where the pages are installed."""
    package: str
    """What installs them."""
    data: str
    """Prefix of the page list and question file in benchmarks/data."""
    suffixes: tuple[str, ...]
    tuned_on: bool
    """Whether the fusion's parameters were chosen on this corpus (then only its held-out questions are reported)."""

    questions_file: Path | None = None
    """Another question file (fields question, document_id; none held out) instead of <data>_questions.jsonl."""

    def pages(self) -> list[str]:
        listing = DATA / f"{self.data}_pages.txt"
        if not listing.is_file():  # every page of the folder
            return sorted(p.relative_to(self.docs).as_posix() for p in self.docs.rglob("*")
                          if p.suffix in self.suffixes)
        return [p for p in listing.read_text().splitlines() if p and not p.startswith("#")]

    def questions(self) -> list[Question]:
        """The answerable questions (an unanswerable one has no page to find)."""
        path = self.questions_file or DATA / f"{self.data}_questions.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines() if line]
        return [Question(r.get("id", f"{self.name}{n:03d}"), r["question"], r.get("page") or r["document_id"],
                         bool(r.get("held_out", False)))
                for n, r in enumerate(rows, start=1)
                if r.get("answerable", True) and (r.get("page") or r.get("document_id"))]

    def prepare(self, state: Path) -> Path:
        """Copy the listed pages under state/corpus, gunzipped (page paths kept: they are the document ids)."""
        if not self.docs.is_dir():
            sys.exit(f"the {self.name} corpus is not installed: {self.docs} is missing. Run `make bench-retrieval` "
                     f"or `apt-get install -y {self.package}` (Debian/Ubuntu), then run this again.")
        corpus = state / "corpus"
        for page in self.pages():
            src, dest = self.docs / page, corpus / page
            packed = src.with_name(src.name + ".gz")
            if not src.is_file() and not packed.is_file():
                sys.exit(f"{src} is missing: {self.package} is not the version this benchmark expects")
            text = src.read_bytes() if src.is_file() else gzip.decompress(packed.read_bytes())
            if not dest.is_file() or dest.read_bytes() != text:
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(text)
        return corpus


CORPORA = {
    "python": Corpus("python", Path("/usr/share/doc/python3.11/html"), "python3-doc", "python_docs", (".html",),
                     tuned_on=True),
    "pip": Corpus("pip", Path("/usr/share/doc/python3-pip/html"), "python3-pip", "pip_docs", (".md", ".rst"),
                  tuned_on=False),
    "sample": Corpus("sample", SAMPLE / "docs", "promptly", "sample", (".md", ".txt", ".html"), tuned_on=False,
                     questions_file=SAMPLE / "qa.jsonl"),
}


@dataclass(frozen=True)
class Scores:
    recall1: float
    recall5: float
    mrr: float

    def row(self, name: str, n: int) -> str:
        return f"| {name:<36} | {n:>3} | {self.recall1:.3f} | {self.recall5:.3f} | {self.mrr:.3f} |"


def ingest(corpus: Corpus, path: Path, store: EmbeddedPostgresStore, embedder: Embedder, context: bool) -> None:
    chunker = TokenChunker(chunk_tokens=200, overlap_tokens=32, context=context)
    fingerprint = f"{chunker.fingerprint()};embedder={embedder.model_name};doc_prefix={embedder.document_prefix}"
    store.migrate()
    source = SourceConfig(path=str(path), name=f"{corpus.name}-docs", suffixes=list(corpus.suffixes))
    report = sync_documents(load_source(source, fingerprint), store, chunker, embedder, cleanup="full",
                            on_progress=lambda _: None)
    print(f"{corpus.name} ingest: {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
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
                 mode: SearchMode, timings: list[float] | None = None, **fusion: float | int | str) -> Ranker:
    cache: dict[int, list[str]] = {}

    def rank(i: int) -> list[str]:
        if i not in cache:
            start = time.perf_counter()
            hits = store.search(vectors[i], questions[i].question, k=DEPTH, mode=mode, **fusion)  # type: ignore[arg-type]
            if timings is not None:
                timings.append(time.perf_counter() - start)
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


def candidates(store: EmbeddedPostgresStore, questions: Sequence[Question], vectors: np.ndarray
               ) -> list[dict[str, list[SearchHit]]]:
    """Each question's top POOL chunks by vector and by text search, with their scores."""
    return [{m: store.search(vectors[i], q.question, k=POOL, mode=m) for m in ("vector", "text")}
            for i, q in enumerate(questions)]


TEXT_WEIGHTS = (0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7)
"""--tune's grid of the convex fusion: the text weight (the vector weight is 1 minus it) ..."""
DEPTHS = (10, 20, 40)
"""... and the candidates each ranking contributes."""


def tune(store: EmbeddedPostgresStore, questions: Sequence[Question], vectors: np.ndarray,
         tuning: Sequence[int]) -> dict[str, float | int | str]:
    """The convex fusion's weights and depth, chosen on the tuning questions alone.

    The rule: the issue's goal as a constraint, then the best MRR. Goal margin = min(recall@5 - max(vector,
    text), MRR - max(vector, text)) must be >= 0; among those, the highest MRR. Both are averaged with the
    neighbouring text weights at the same depth first: one question moves recall@5 by ~0.01 on 104 questions,
    and a lone peak is noise, not a setting that carries to another corpus.
    """
    inputs = [score(store_ranker(store, questions, vectors, m), questions, tuning) for m in ("vector", "text")]
    best_r5, best_mrr = max(s.recall5 for s in inputs), max(s.mrr for s in inputs)
    raw: dict[tuple[float, int], Scores] = {}
    for text_w, depth in itertools.product(TEXT_WEIGHTS, DEPTHS):
        raw[text_w, depth] = score(store_ranker(store, questions, vectors, "hybrid", fusion="convex",
                                                full_text_weight=text_w, semantic_weight=round(1 - text_w, 4),
                                                candidates=depth), questions, tuning)
    smoothed: dict[tuple[float, int], tuple[float, float]] = {}
    for (text_w, depth), s in raw.items():
        i = TEXT_WEIGHTS.index(text_w)
        near = [raw[w, depth] for w in TEXT_WEIGHTS[max(i - 1, 0): i + 2]]
        smoothed[text_w, depth] = (float(np.mean([min(n.recall5 - best_r5, n.mrr - best_mrr) for n in near])),
                                   float(np.mean([n.mrr for n in near])))
        print(f"tune convex text_weight={text_w} candidates={depth}: recall@5={s.recall5:.3f} mrr={s.mrr:.3f} "
              f"smoothed margin={smoothed[text_w, depth][0]:+.4f} mrr={smoothed[text_w, depth][1]:.4f}", flush=True)
    text_w, depth = max(smoothed, key=lambda key: (smoothed[key][0] >= 0, smoothed[key][1]))
    return {"fusion": "convex", "full_text_weight": text_w, "semantic_weight": round(1 - text_w, 4),
            "candidates": depth}


def summary(corpus: Corpus, results: dict[str, Scores], default: str) -> str:
    """The machine-readable line of one corpus."""
    by = {"default": results[default], "vector": results["promptly vector"], "text": results["promptly text"],
          "bm25": results["BM25 baseline (bm25s)"], "rrf": results[BEFORE]}
    met = all(getattr(by["default"], m) >= max(getattr(by["vector"], m), getattr(by["text"], m)) - 1e-9
              for m in ("recall5", "mrr"))
    fields = " ".join(f"{name}_recall5={s.recall5:.3f} {name}_mrr={s.mrr:.3f}" for name, s in by.items())
    return f"{corpus.name}: {fields} goal={'met' if met else 'missed'}"


def run_corpus(corpus: Corpus, state: Path, embedder: Embedder, context: bool, do_tune: bool,
               dump: Path | None) -> str:
    path = corpus.prepare(state)
    store = EmbeddedPostgresStore(state / ("pg-nocontext" if not context else "pg"),
                                  embedding_dim=embedder.dimension)
    try:
        ingest(corpus, path, store, embedder, context=context)
        questions = corpus.questions()
        vectors = embedder.embed_queries([q.question for q in questions])
        held_out = [i for i, q in enumerate(questions) if q.held_out]
        subsets = ({"tuning": [i for i, q in enumerate(questions) if not q.held_out], "held-out": held_out}
                   if corpus.tuned_on else {"held-out": held_out} if held_out else {})
        subsets["all"] = list(range(len(questions)))
        if dump is not None:
            rows = [{"question": q.question, "page": q.page, "held_out": q.held_out,
                     **{m: [[h.chunk_id, h.document_id, h.score] for h in hits] for m, hits in c.items()}}
                    for q, c in zip(questions, candidates(store, questions, vectors), strict=True)]
            dump.write_text(json.dumps(rows))
        if do_tune:
            print(f"best fusion on the tuning questions: {tune(store, questions, vectors, subsets['tuning'])}")
        default_mode = str(RetrievalConfig().mode.value)
        timings: dict[str, list[float]] = {m: [] for m in (*MODES, "hybrid rrf (before)")}
        rankers = {f"promptly {m}" + (" (default)" if m == default_mode else ""):
                   store_ranker(store, questions, vectors, m, timings[m]) for m in MODES}
        rankers[BEFORE] = store_ranker(store, questions, vectors, "hybrid", timings["hybrid rrf (before)"],
                                       fusion="rrf")
        rankers["BM25 baseline (bm25s)"] = bm25_ranker(store, questions)
        results: dict[tuple[str, str], Scores] = {}
        for subset, indices in subsets.items():
            print(f"\n{corpus.name}, {subset} questions ({len(indices)})\n"
                  f"| {'search':<36} |   n | r@1   | r@5   | MRR   |")
            for name, ranker in rankers.items():
                results[name, subset] = score(ranker, questions, indices)
                print(results[name, subset].row(name, len(indices)))
        print(f"\n{corpus.name} search latency p50 (ms, one query at a time, query embedding excluded): " +
              ", ".join(f"{m} {1000 * float(np.median(t)):.1f}" for m, t in timings.items()))
    finally:
        store.close()
    reported = "held-out" if corpus.tuned_on else "all"
    scores = {name.removesuffix(" (default)"): s for (name, subset), s in results.items() if subset == reported}
    return summary(corpus, scores, f"promptly {default_mode}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=sorted(CORPORA), action="append",
                        help="a corpus to run (repeat for several; default: all)")
    parser.add_argument("--state", type=Path, default=Path(".promptly/bench/retrieval"))
    parser.add_argument("--no-context", action="store_true", help="ingest without title/heading context")
    parser.add_argument("--tune", action="store_true", help="choose the fusion on python's non-held-out questions")
    parser.add_argument("--dump", type=Path, help="write each corpus's cached candidates to DUMP/<corpus>.json")
    args = parser.parse_args()
    names = args.corpus or list(CORPORA)
    embedder = Embedder()
    lines = []
    for name in names:
        corpus = CORPORA[name]
        if args.dump is not None:
            args.dump.mkdir(parents=True, exist_ok=True)
        lines.append(run_corpus(corpus, args.state / name, embedder, context=not args.no_context,
                                do_tune=args.tune and corpus.tuned_on,
                                dump=args.dump / f"{name}.json" if args.dump is not None else None))
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
