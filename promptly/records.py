"""Plain records passed between stages: every arrow in the pipeline carries one of these."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Split = Literal["train", "validation", "test"]
SearchMode = Literal["vector", "text", "hybrid"]
QAOrigin = Literal["file", "generated"]
"""A QA pair's source: the QA file beside the corpus, or `promptly qa generate`."""

# A fixed namespace so that chunk ids are reproducible from (document, ordinal, content).
_CHUNK_NAMESPACE = uuid.UUID("6f1c7a52-1d0e-4d7e-9a51-0c9d2b7f4a10")


def sha256_hex(text: str) -> str:
    """Hex SHA-256 of UTF-8 text; the one hash used for documents and pipeline fingerprints."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Document:
    """A source document after loading and normalisation, before chunking."""

    id: str
    text: str
    title: str
    source: str
    uri: str
    content_hash: str
    metadata: dict[str, Any] = field(default_factory=dict)
    split: Split | None = None
    """Assigned at ingest from the document id (promptly/ingest/splits.py); not part of the hash."""


@dataclass(frozen=True)
class Chunk:
    """A token-bounded piece of a document, with its embedding once embedded."""

    document_id: str
    ordinal: int
    content: str
    token_count: int
    metadata: dict[str, Any] = field(default_factory=dict)
    embedding: tuple[float, ...] | None = None

    @property
    def id(self) -> str:
        """Deterministic UUID: the same text at the same place always gets the same id."""
        key = f"{self.document_id}\x00{self.ordinal}\x00{sha256_hex(self.content)}"
        return str(uuid.uuid5(_CHUNK_NAMESPACE, key))


@dataclass(frozen=True)
class QAPair:
    """A supervised question/answer example grounded in one document."""

    question: str
    answer: str
    document_id: str
    split: Split
    chunk_ids: tuple[str, ...] = ()
    id: str = ""
    origin: QAOrigin = "file"

    def with_id(self) -> QAPair:
        """The pair with a stable id derived from its document and question."""
        if self.id:
            return self
        key = f"{self.document_id}\x00{self.question.strip().lower()}"
        return replace(self, id=str(uuid.uuid5(_CHUNK_NAMESPACE, key)))


@dataclass(frozen=True)
class SearchHit:
    """A chunk returned by retrieval, with the score the search mode ranked it by."""

    chunk_id: str
    document_id: str
    ordinal: int
    content: str
    metadata: dict[str, Any]
    score: float


@dataclass(frozen=True)
class StoreStatus:
    """What `promptly db status` prints."""

    backend: str
    applied_migrations: tuple[str, ...]
    pending_migrations: tuple[str, ...]
    embedding_dim: int | None
    documents: int
    chunks: int
    qa_pairs: int
    generated_qa_pairs: int = 0
    """Of qa_pairs, those `promptly qa generate` made (the rest come from the QA file)."""
    conversations: int = 0
    liked_conversations: int = 0
    """Conversations rated up: the examples of data=conversations."""
    model_versions: int = 0
    """Versions `promptly publish` recorded (migration 0001's model_versions table)."""


@dataclass(frozen=True)
class Citation:
    """A source an answer was given: one retrieved chunk, numbered as the prompt numbered it."""

    number: int
    """The chunk's source number in the prompt ([1], [2], ...)."""
    chunk_id: str
    document_id: str
    ordinal: int
    """The chunk's position within its document."""
    title: str
    score: float | None
    """The score the search ranked it by (None for a chunk given rather than retrieved)."""


@dataclass(frozen=True)
class Evidence:
    """A sentence of a cited chunk that an answer rests on (promptly/evidence.py chose it)."""

    number: int
    """The citation number of its chunk ([n] in the answer)."""
    chunk_id: str
    document_id: str
    sentence: str
    """Verbatim: the chunk's content[start:end]."""
    start: int
    end: int
    support: float
    """How well it supports the answer sentence (or the question), in [0, 1]."""
    answer_sentence: int | None = None
    """The answer sentence it supports (0-based; extractive: its place in the answer); None: it supports the
    question but no answer sentence."""
    shown: str = ""
    """How a reader should see it, on one line: a table row with its column names ("Resource: Memory;
    Minimum: 2 GB; ..."), else the sentence with its hard wraps joined ("": show `sentence`)."""


@dataclass(frozen=True)
class Answer:
    """One answered question: what `promptly ask` prints and the server returns."""

    question: str
    text: str
    citations: tuple[Citation, ...]
    model: str
    """The model's name (run folder, version or base model)."""
    seconds: float
    """Retrieval and generation, wall clock (shared equally by the questions of one batch)."""
    evidence: tuple[Evidence, ...] = ()
    """The source sentences the answer rests on; `text` carries their [n] markers."""
    abstained: bool = False
    """No retrieved sentence supported an answer: `text` says the sources do not say."""
    style: str = "generative"
    """generative (the model's words, marked) or extractive (quoted source sentences)."""
    support: float | None = None
    """The best support of the question by a retrieved sentence (what abstention compared)."""
