"""Answers that show their evidence, on the sample corpus with the packaged SmolLM2-135M-Instruct.

Store: the sample corpus ingested with promptly's defaults (token chunker 200/32 with context, MiniLM,
embedded Postgres under --state; a rerun re-embeds nothing). Retrieval: hybrid, k=3, as `promptly ask`.

1. Abstention threshold (`evidence.abstain_below`): the best support of each question by a retrieved
   sentence, on answerable questions (the QA file's validation split) and on questions the corpus does not
   answer (benchmarks/data/sample_unanswerable.jsonl, `use: tune`). Chosen there, reported on the test
   split and the 10 `use: report` questions, which the choice never saw.
2. On the test split (answerable) with the chosen threshold: how often the supporting sentences hold the
   reference answer's key terms (its content words the question lacks), citation hit rate (a supporting
   sentence from the reference's page), and key-term recall of generative (greedy, 128 new tokens) vs
   extractive answers. Generative answers are generated once with abstention off; the thresholded figures
   apply the abstention to them afterwards (an abstained answer states no key term).

The last line is `abstention_rate=<r> false_abstention_rate=<r> generative_recall=<r> extractive_recall=<r>`.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from promptly.answering import Answerer
from promptly.data.config import PromptConfig
from promptly.evaluation.evidence_metrics import key_terms as reference_key_terms
from promptly.evaluation.evidence_metrics import score_answer, summarize
from promptly.ingest.chunking import TokenChunker
from promptly.ingest.documents import SourceConfig, load_source
from promptly.ingest.embedding import Embedder
from promptly.ingest.qa import load_qa_pairs
from promptly.ingest.splits import SplitConfig
from promptly.ingest.sync import sync_documents
from promptly.model.config import SamplingConfig
from promptly.model.factory import ModelFactory
from promptly.model.loading import load_base
from promptly.model.packaged import PackagedModelConfig
from promptly.records import Answer
from promptly.retrieval import Retriever
from promptly.settings import AnswerStyle, EvidenceSettings
from promptly.store.embedded import EmbeddedPostgresStore

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
UNANSWERABLE = Path(__file__).resolve().parent / "data" / "sample_unanswerable.jsonl"
THRESHOLDS = (0.20, 0.225, 0.25, 0.275, 0.30, 0.325, 0.35, 0.375, 0.40, 0.45)


def open_store(state: Path, embedder: Embedder) -> EmbeddedPostgresStore:
    store = EmbeddedPostgresStore(state / "pg", embedding_dim=embedder.dimension)
    store.migrate()
    chunker = TokenChunker()
    report = sync_documents(load_source(SourceConfig(path=str(SAMPLE / "docs")), chunker.fingerprint()),
                            store, chunker, embedder)
    assert report.ok, report.failed
    load_qa_pairs(SAMPLE / "qa.jsonl", store, embedder, SplitConfig())
    return store


def best_supports(answerer: Answerer, questions: list[str]) -> np.ndarray:
    return np.array([p.best_support for p in answerer.plans(answerer.prepare(questions))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state", type=Path, default=Path("/tmp/promptly-bench-evidence"))
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--limit", type=int, default=None, help="at most this many test questions")
    parser.add_argument("--threshold", type=float, default=None, help="use this one instead of choosing")
    args = parser.parse_args()
    embedder = Embedder()
    store = open_store(args.state, embedder)
    factory = ModelFactory("HuggingFaceTB/SmolLM2-135M-Instruct", dtype="float32",
                           packaged=PackagedModelConfig(cache_dir=str(args.state / "models")))
    loaded = load_base(factory, PromptConfig(), 1024)
    sampling = SamplingConfig(batch_size=8, max_new_tokens=args.max_new_tokens, repetition_penalty=1.1)
    retriever = Retriever(store, embedder, k=3, mode="hybrid")
    rows = [json.loads(line) for line in UNANSWERABLE.read_text().splitlines() if line.strip()]
    tune_no = [r["question"] for r in rows if r["use"] == "tune"]
    report_no = [r["question"] for r in rows if r["use"] == "report"]
    validation = list(store.iter_qa_pairs(split="validation"))
    test = list(store.iter_qa_pairs(split="test"))[: args.limit or None]

    # 1. the threshold
    never = EvidenceSettings(abstain_below=0.0)
    answerer = Answerer(loaded, retriever, sampling, never)
    yes_support = best_supports(answerer, [p.question for p in validation])
    no_support = best_supports(answerer, tune_no)
    print(f"AUC of best support, answerable vs not (tuning set): {_auc(yes_support, no_support):.3f}", flush=True)
    print(f"validation: {len(validation)} answerable, {len(tune_no)} unanswerable (tune)")
    print(f"best support: answerable median {np.median(yes_support):.3f} (min {yes_support.min():.3f}); "
          f"unanswerable median {np.median(no_support):.3f} (max {no_support.max():.3f})")
    print("| abstain_below | abstained, unanswerable (tune) | abstained, answerable (validation) |")
    best_t, best_j = THRESHOLDS[0], -1.0
    for t in THRESHOLDS:
        no_rate, yes_rate = float((no_support < t).mean()), float((yes_support < t).mean())
        print(f"| {t:.3f} | {no_rate:.2f} | {yes_rate:.2f} |", flush=True)
        if yes_rate <= 0.10 and no_rate - yes_rate > best_j:  # at most 1 in 10 answerable questions refused
            best_t, best_j = t, no_rate - yes_rate
    threshold = args.threshold if args.threshold is not None else best_t
    print(f"chosen abstain_below={threshold:.3f}", flush=True)

    # 2. the test split and the held-out unanswerable questions
    settings = EvidenceSettings(abstain_below=threshold)
    started = time.perf_counter()
    gen = Answerer(loaded, retriever, sampling, never)
    prepared = gen.prepare([p.question for p in test])
    generated = gen.answer_prepared(prepared)
    gen_s = time.perf_counter() - started
    plans = gen.plans(prepared)
    ext = Answerer(loaded, retriever, sampling, replace(settings, answer_style=AnswerStyle.extractive))
    extracted = ext.answer_prepared(prepared)
    abstain = [pl.best_support < threshold for pl in plans]
    thresholded = [_abstained(a) if no else a for a, no in zip(generated, abstain, strict=True)]
    report_support = best_supports(answerer, report_no)
    test_support = np.array([pl.best_support for pl in plans])
    print(f"AUC of best support, answerable vs not (held out): {_auc(test_support, report_support):.3f}")
    print(f"test: {len(test)} questions; generation {gen_s:.0f} s", flush=True)

    def table(name: str, answers: list[Answer], with_no: bool) -> dict[str, float]:
        scores = [score_answer(a, reference_key_terms(p.answer, p.question), p.document_id)
                  for a, p in zip(answers, test, strict=True)]
        summary = summarize(scores, [True] * len(scores))
        if with_no:
            summary["abstention_rate"] = float((report_support < threshold).mean())
        print(f"| {name} | " + " | ".join(f"{k} {v:.3f}" for k, v in summary.items()) + " |")
        return summary

    table("generative, no abstention", generated, False)
    g = table(f"generative, abstain_below={threshold:.2f}", thresholded, True)
    e = table(f"extractive, abstain_below={threshold:.2f}", extracted, True)
    marked = sum(1 for a in generated if "[" in a.text) / max(len(generated), 1)
    print(f"generative answers with at least one marker: {marked:.2f}")
    for a, p in list(zip(generated, test, strict=True))[:3]:
        print(json.dumps({"question": p.question, "reference": p.answer, "answer": a.text,
                          "evidence": [x.sentence for x in a.evidence]}, ensure_ascii=False))
    for q in report_no[:3]:
        print(json.dumps({"question": q, "support": round(float(report_support[report_no.index(q)]), 3)}))
    store.close()
    print(f"abstention_rate={g['abstention_rate']:.2f} false_abstention_rate={g['false_abstention_rate']:.2f} "
          f"generative_recall={g['key_fact_recall']:.3f} extractive_recall={e['key_fact_recall']:.3f}")


def _auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Chance that an answerable question gets more support than an unanswerable one."""
    return float(np.mean([(p > n) + 0.5 * (p == n) for p in positive for n in negative]))


def _abstained(answer: Answer) -> Answer:
    from promptly.evidence import ABSTENTION

    return replace(answer, text=f"{ABSTENTION}.", evidence=(), abstained=True)


if __name__ == "__main__":
    main()
