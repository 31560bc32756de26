"""Embedding batches: promptly's length-grouped batches vs sentence-transformers' own batching.

Baseline (measured in the same run): `SentenceTransformer.encode(texts, batch_size=64)` on the same
model, which sorts the texts by length and pads each batch to its longest; promptly's Embedder
groups texts so a batch's longest is at most twice its shortest (promptly/ingest/embedding.py).

Two workloads from the sample corpus, each embedded call by call as promptly makes the calls:
- metric-shaped: per chunk, one call with the chunk, its sentences and adjacent sentence pairs (what
  the faithfulness metric embeds when `promptly eval` scores an answer and `qa generate` validates one);
- ingest-shaped: all chunks in calls of 256 (`ingest.embed_batch_chunks`), lengths already similar.
Vectors are compared too (they must agree to 1e-5). Last line: `mixed_length_speedup=<baseline
seconds / promptly seconds on the metric-shaped workload>`; the target is >= 2 and the ingest-shaped
ratio should stay near 1.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from promptly.ingest.chunking import TokenChunker, untruncated_tokenizer
from promptly.ingest.documents import SourceConfig, load_source
from promptly.ingest.embedding import Embedder
from promptly.records import Document
from promptly.utils import text

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "docs"


def timed(calls: list[list[str]], encode: Callable[[list[str]], np.ndarray]) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    vectors = [encode(c) for c in calls]
    return time.perf_counter() - started, np.vstack(vectors)


def main() -> None:
    embedder = Embedder()
    chunker = TokenChunker(chunk_tokens=200, overlap_tokens=32)
    chunker.bind(untruncated_tokenizer(embedder.hf_tokenizer), embedder.max_seq_length)
    docs = [d for d in load_source(SourceConfig(path=str(SAMPLE)), chunker.fingerprint()) if isinstance(d, Document)]
    chunks = [c.content for d in docs for c in chunker.split(d)]
    metric_calls = []
    for chunk in chunks[::5]:  # every fifth chunk keeps the run short
        sentences = text.split_sentences(chunk)
        metric_calls.append([chunk, *sentences, *(f"{a} {b}" for a, b in itertools.pairwise(sentences))])
    ingest_calls = [chunks[i:i + 256] for i in range(0, len(chunks), 256)]

    model = embedder.model

    def baseline(texts: list[str]) -> np.ndarray:
        return np.asarray(model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                                       show_progress_bar=False))

    embedder.embed_documents(["warm up"])
    results = {}
    for name, calls in (("metric-shaped", metric_calls), ("ingest-shaped", ingest_calls)):
        texts = sum(len(c) for c in calls)
        base_s, base_v = timed(calls, baseline)
        ours_s, ours_v = timed(calls, embedder.embed_documents)
        assert np.allclose(base_v, ours_v, atol=1e-5), "promptly's vectors differ from the baseline's"
        results[name] = base_s / ours_s
        print(f"[{name}] {len(calls)} calls, {texts} texts: sentence-transformers {base_s:.2f} s "
              f"({texts / base_s:.0f} texts/s), promptly {ours_s:.2f} s ({texts / ours_s:.0f} texts/s), "
              f"ratio {results[name]:.2f}")
    print(f"mixed_length_speedup={results['metric-shaped']:.2f}")


if __name__ == "__main__":
    main()
