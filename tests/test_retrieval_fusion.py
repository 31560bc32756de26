"""Hybrid search fuses the rankings' scores (migration 0014): min-max normalised BM25 and cosine similarity,
weighted 0.45 / 0.55 over each ranking's top 40, on psycopg and on Supabase's rpc; 0007's rank fusion stays
available as fusion='rrf'."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest

from promptly.records import Chunk, Document, sha256_hex
from promptly.store.base import ChunkStore, fusion_arguments

from .conftest import DIM

QUERY = "zstd compression level"
TEXTS = {
    "x.md": "zstd compression level nineteen",   # BM25 far ahead of every other chunk
    "y.md": "zstd archives",                     # second by BM25, a long way behind x
    "z.md": "the level of the ground floor tiles, measured twice before the tiles were laid",
    "w.md": "nothing relevant here",             # no query word: only in the vector ranking
}
COSINE = {"y.md": 0.80, "z.md": 0.79, "x.md": 0.78, "w.md": 0.10}
"""The vector ranking barely separates y, z and x: y first, x third."""


@pytest.fixture(params=["postgres", "supabase"])
def store(request: pytest.FixtureRequest, pg_store: ChunkStore) -> Iterator[ChunkStore]:
    yield pg_store if request.param == "postgres" else request.getfixturevalue("supabase_contract_store")


def query_vector() -> tuple[float, ...]:
    v = np.zeros(DIM)
    v[0] = 1.0
    return tuple(float(x) for x in v)


def at_cosine(cosine: float, axis: int) -> tuple[float, ...]:
    """A unit vector whose cosine similarity with the query (axis 0) is exactly `cosine`."""
    v = np.zeros(DIM)
    v[0], v[axis] = cosine, math.sqrt(1 - cosine**2)
    return tuple(float(x) for x in v)


def fill(store: ChunkStore) -> None:
    for axis, (doc_id, text) in enumerate(TEXTS.items(), start=1):
        doc = Document(id=doc_id, text=text, title=doc_id, source="test", uri=f"file://{doc_id}",
                       content_hash=sha256_hex(text))
        store.upsert_document(doc, [Chunk(document_id=doc_id, ordinal=0, content=text, token_count=len(text.split()),
                                          embedding=at_cosine(COSINE[doc_id], axis))])


def normalised(scores: dict[str, float]) -> dict[str, float]:
    lo, hi = min(scores.values()), max(scores.values())
    return {key: (s - lo) / (hi - lo) if hi > lo else 1.0 for key, s in scores.items()}


def test_default_hybrid_adds_min_max_normalised_scores_by_weight(store: ChunkStore) -> None:
    fill(store)
    text = {h.document_id: h.score for h in store.search(query_vector(), QUERY, k=40, mode="text")}
    vector = {h.document_id: h.score for h in store.search(query_vector(), QUERY, k=40, mode="vector")}
    assert set(text) == {"x.md", "y.md", "z.md"} and vector == pytest.approx(COSINE)
    norm_text, norm_vector = normalised(text), normalised(vector)
    want = {doc: 0.45 * norm_text.get(doc, 0.0) + 0.55 * norm_vector[doc] for doc in TEXTS}
    hits = store.search(query_vector(), QUERY, k=4, mode="hybrid")
    assert {h.document_id: h.score for h in hits} == pytest.approx(want)
    assert [h.document_id for h in hits] == sorted(want, key=lambda d: -want[d])


def test_a_decisive_ranking_outweighs_a_near_tie_in_the_other(store: ChunkStore) -> None:
    """BM25 puts x far ahead of y; cosine puts y a hair ahead of x (0.80 against 0.78). Score fusion ranks x
    first; rank fusion only saw that x was 1st and 3rd, y 2nd and 1st, and ranked y first."""
    fill(store)
    text = store.search(query_vector(), QUERY, k=4, mode="text")
    assert [h.document_id for h in text][:2] == ["x.md", "y.md"] and text[0].score > 2 * text[1].score
    assert [h.document_id for h in store.search(query_vector(), QUERY, k=4, mode="vector")][:3] == [
        "y.md", "z.md", "x.md"]
    assert store.search(query_vector(), QUERY, k=1, mode="hybrid")[0].document_id == "x.md"
    assert store.search(query_vector(), QUERY, k=1, mode="hybrid", fusion="rrf")[0].document_id == "y.md"


def test_rrf_keeps_its_own_defaults_when_named_alone(store: ChunkStore) -> None:
    """fusion='rrf' with no weights is 0007's tuned rule (1.0 / 0.75, rrf_k 10), not rrf with convex weights."""
    fill(store)
    text = [h.document_id for h in store.search(query_vector(), QUERY, k=20, mode="text")]
    vector = [h.document_id for h in store.search(query_vector(), QUERY, k=20, mode="vector")]
    want = {doc: sum(w / (10 + ranking.index(doc) + 1) for ranking, w in ((text, 1.0), (vector, 0.75))
                     if doc in ranking) for doc in TEXTS}
    hits = store.search(query_vector(), QUERY, k=4, mode="hybrid", fusion="rrf")
    assert {h.document_id: h.score for h in hits} == pytest.approx(want)


def test_an_unknown_fusion_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="fusion must be convex or rrf, got 'borda'"):
        fusion_arguments(None, None, None, None, "borda")  # type: ignore[arg-type]
