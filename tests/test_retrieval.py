"""match_chunks on the ingested sample corpus: a query finds the document it was taken from."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from promptly.ingest.embedding import Embedder
from promptly.records import SearchMode
from promptly.store.postgres import PostgresStore

MODES: list[SearchMode] = ["vector", "text", "hybrid"]


def passage_queries(store: PostgresStore, n_docs: int = 12) -> list[tuple[str, str]]:
    """(passage, document id) pairs: 50 words from the middle chunk of each sampled document."""
    by_doc: dict[str, list[str]] = {}
    for chunk in store.iter_chunks():
        by_doc.setdefault(chunk.document_id, []).append(chunk.content)
    queries = []
    for doc_id in sorted(by_doc)[:: max(1, len(by_doc) // n_docs)][:n_docs]:
        chunk = by_doc[doc_id][len(by_doc[doc_id]) // 2]
        words = re.sub(r"[#|`*]", " ", chunk).split()
        mid = max(0, len(words) // 2 - 25)
        queries.append((" ".join(words[mid:mid + 50]), doc_id))
    return queries


@pytest.mark.parametrize("mode", MODES)
def test_query_taken_from_a_document_finds_it_in_top_3(
        ingested_store: PostgresStore, embedder: Embedder, mode: SearchMode) -> None:
    queries = passage_queries(ingested_store)
    assert len(queries) >= 10
    misses = []
    vectors = embedder.embed_queries([q for q, _ in queries])
    for (sentence, doc_id), vector in zip(queries, vectors, strict=True):
        hits = ingested_store.search(vector, sentence, k=3, mode=mode)
        if doc_id not in [h.document_id for h in hits]:
            misses.append((doc_id, sentence))
    assert misses == []


def test_questions_retrieve_their_gold_document(ingested_store: PostgresStore, embedder: Embedder) -> None:
    """The QA questions are paraphrases, not copies: hybrid search must still find most of them."""
    pairs = list(ingested_store.iter_qa_pairs())[::4]
    found: Counter[str] = Counter()
    vectors = embedder.embed_queries([p.question for p in pairs])
    for mode in MODES:
        for pair, vector in zip(pairs, vectors, strict=True):
            hits = ingested_store.search(vector, pair.question, k=5, mode=mode)
            found[mode] += pair.document_id in {h.document_id for h in hits}
    rates = {mode: found[mode] / len(pairs) for mode in MODES}
    assert rates["hybrid"] >= 0.8, rates
    assert rates["hybrid"] >= min(rates["vector"], rates["text"]), rates


def test_qa_pairs_have_splits_by_document_and_gold_chunks(ingested_store: PostgresStore) -> None:
    pairs = list(ingested_store.iter_qa_pairs())
    assert len(pairs) >= 100
    splits_of_doc: dict[str, set[str]] = {}
    for p in pairs:
        splits_of_doc.setdefault(p.document_id, set()).add(p.split)
    assert all(len(s) == 1 for s in splits_of_doc.values())  # no document in two splits
    assert {p.split for p in pairs} == {"train", "validation", "test"}
    chunks = {c.id: c for c in ingested_store.iter_chunks()}
    for p in pairs:
        assert len(p.chunk_ids) == 1
        assert chunks[p.chunk_ids[0]].document_id == p.document_id  # gold chunk lies in its document
