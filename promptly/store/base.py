"""The ChunkStore protocol every backend implements, and the errors they raise."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, cast, runtime_checkable

from promptly.errors import PromptlyError
from promptly.records import Chunk, Document, QAOrigin, QAPair, SearchHit, SearchMode, Split, StoreStatus

STATUS_COUNTS: dict[str, tuple[str, str, str | None, str | None]] = {
    "documents": ("0001", "documents", None, None),
    "chunks": ("0001", "chunks", None, None),
    "qa_pairs": ("0001", "qa_pairs", None, None),
    "generated_qa_pairs": ("0005", "qa_pairs", "origin", "generated"),
    "conversations": ("0004", "conversations", None, None),
    "liked_conversations": ("0004", "conversations", "feedback", "up"),
    "model_versions": ("0001", "model_versions", None, None),
}
"""The counts `promptly db status` shows: name -> (migration creating it, table, filter column, value)."""


Fusion = Literal["convex", "rrf"]
"""How hybrid search fuses its two rankings (migration 0014): `convex`, the default, adds each ranking's
min-max normalised scores by weight; `rrf` adds weight / (rrf_k + rank), 0007's reciprocal rank fusion."""

ANONYMOUS = ""
"""`search(viewer=ANONYMOUS)`: a requester with no name sees only the chunks nobody owns."""


class StoreError(PromptlyError, RuntimeError):
    """A store problem a user can act on; the message names the setting, never a secret."""


class StoreConnectionError(StoreError):
    """The store could not be reached or refused the credentials."""


class SchemaMismatchError(StoreError):
    """The store's schema is missing, or was built for another embedding dimension."""


@runtime_checkable
class ChunkStore(Protocol):
    """Where documents, their embedded chunks and QA pairs live; one protocol for every backend.

    The iter_* methods stream over the store's one connection (a server-side cursor in Postgres):
    consume one completely, or spool it, before making another call on the same store.
    """

    backend: str
    embedding_dim: int

    def migrate(self) -> list[str]:
        """Apply pending migrations; return the versions applied now."""
        ...

    def status(self) -> StoreStatus:
        """Applied migrations and row counts."""
        ...

    def document_hashes(self, source: str | None = None) -> dict[str, str]:
        """Content hash of every stored document (of one source, if given), by id."""
        ...

    def document_splits(self) -> dict[str, Split | None]:
        """Every stored document's split (None: stored before splits were, until the next ingest)."""
        ...

    def set_document_splits(self, splits: Mapping[str, Split]) -> int:
        """Set the split of stored documents by id, without touching their chunks; return rows changed."""
        ...

    def upsert_document(self, document: Document, chunks: Sequence[Chunk]) -> int:
        """Replace a document and all its chunks atomically; return the number of chunks written."""
        ...

    def delete_documents(self, document_ids: Iterable[str]) -> int:
        """Delete documents (their chunks and QA pairs cascade); return how many existed."""
        ...

    def iter_chunks(
        self, document_ids: Sequence[str] | None = None, batch_size: int = 500
    ) -> Iterator[Chunk]:
        """Stream chunks (ordered by document and ordinal) without loading them all at once."""
        ...

    def upsert_qa_pairs(self, pairs: Sequence[QAPair]) -> int:
        """Insert or update QA pairs by id; return how many were written."""
        ...

    def iter_qa_pairs(self, split: Split | None = None, batch_size: int = 500,
                      origin: QAOrigin | None = None) -> Iterator[QAPair]:
        """Stream QA pairs, optionally of one split and/or one origin (file or generated)."""
        ...

    def delete_qa_pairs(self, pair_ids: Iterable[str]) -> int:
        """Delete QA pairs by id; return how many existed."""
        ...

    def existing_chunk_ids(self, chunk_ids: Sequence[str]) -> set[str]:
        """The subset of the given chunk ids that are still stored."""
        ...

    def get_chunks(self, chunk_ids: Sequence[str]) -> dict[str, Chunk]:
        """The stored chunks among these ids, by id (missing ids are simply absent)."""
        ...

    def search(
        self,
        query_embedding: Sequence[float],
        query_text: str = "",
        k: int = 5,
        filter: dict[str, Any] | None = None,
        mode: SearchMode = "hybrid",
        full_text_weight: float | None = None,
        semantic_weight: float | None = None,
        rrf_k: int | None = None,
        candidates: int | None = None,
        viewer: str | None = None,
        fusion: Fusion | None = None,
    ) -> list[SearchHit]:
        """Top-k chunks through the `match_chunks` SQL function.

        `text` ranks by BM25 (migration 0007), `vector` by cosine similarity, `hybrid` fuses each ranking's
        top `candidates` by `fusion` (migration 0014): `convex` (the default) weighs their min-max normalised
        scores, `rrf` their ranks (`rrf_k` applies to it alone). A fusion parameter left as None takes the SQL
        function's default for that fusion, the values tuned on benchmarks/retrieval_quality.py.

        `viewer` (migration 0012) is who asks: chunks whose metadata names another `owner` are left out
        before ranking, so k results remain whatever anyone uploaded. None: no owner restriction (the offline
        verbs); ANONYMOUS (""): only chunks without an owner; a name: those plus that owner's.

        Query text and filter values follow promptly.textsafe's rule (NUL removed, lone surrogates replaced),
        as every string a store writes does.
        """
        ...

    def close(self) -> None:
        """Release connections (and stop an embedded server this store started)."""
        ...

    # -- conversations (migration 0004): what `promptly serve` answered, and the user's feedback ----------
    def add_conversation(self, question: str, answer: str, chunk_ids: Sequence[str] = (),
                         model_version: str | None = None, feedback: Feedback | None = None) -> str:
        """Record one answered question; return its id (made here, so anonymous writers need no read)."""
        ...

    def set_feedback(self, conversation_id: str, feedback: Feedback | None) -> bool:
        """Set (or clear, with None) a conversation's feedback; False when no such conversation exists."""
        ...

    def iter_conversations(self, feedback: Feedback | None = None, batch_size: int = 500
                           ) -> Iterator[Conversation]:
        """Stream conversations, oldest first, optionally only those with this feedback (service role)."""
        ...

    # -- published model versions (migration 0008): what `promptly publish` pushed, and which one is served --
    def add_model_version(self, version: ModelVersion) -> None:
        """Record a published version (inactive); an existing (repo_id, version) is refused, never replaced."""
        ...

    def list_model_versions(self, repo_id: str | None = None) -> list[ModelVersion]:
        """Every recorded version (of one repository, if given), oldest first."""
        ...

    def active_model_version(self) -> ModelVersion | None:
        """The version the server loads, or None before the first promote."""
        ...

    def promote_model_version(self, repo_id: str, version: str) -> ModelVersion:
        """Make this version the active one, in one statement; ModelVersionNotFoundError if unknown."""
        ...

    def rollback_model_version(self) -> ModelVersion:
        """Undo the newest promote (the version active before it is active again); return the active one.
        ModelVersionNotFoundError when there is nothing earlier to go back to."""
        ...

    # -- data balance (migration 0009) ---------------------------------------------------------------------
    def data_balance(self, owner_key: str = "owner") -> list[BalanceRow]:
        """Documents, chunks and QA pairs per source, per owner (document metadata `owner_key`) and per
        document, counted by the SQL function promptly_data_balance on every backend."""
        ...


def fusion_arguments(full_text_weight: float | None, semantic_weight: float | None, rrf_k: int | None,
                     candidates: int | None, fusion: Fusion | None = None) -> dict[str, float | int | str]:
    """The fusion parameters given to `search`, by match_chunks' argument names; None ones are left out,
    so the SQL function's defaults (migration 0014) stay the single place they are set."""
    given = {"full_text_weight": full_text_weight, "semantic_weight": semantic_weight, "rrf_k": rrf_k,
             "candidates": candidates, "fusion": fusion}
    if candidates is not None and candidates < 1:
        raise ValueError(f"candidates must be at least 1, got {candidates}")
    if fusion is not None and fusion not in ("convex", "rrf"):
        raise ValueError(f"fusion must be convex or rrf, got {fusion!r}")
    return {name: value for name, value in given.items() if value is not None}


def check_dimension(stored: int | None, configured: int, where: str) -> None:
    """Refuse a store whose vectors have another dimension than the configured embedder's."""
    if stored is not None and stored > 0 and stored != configured:
        raise SchemaMismatchError(
            f"{where} stores vector({stored}) embeddings but the configured embedder produces "
            f"{configured} dimensions. Use the embedder the store was built with, or point "
            "`store` at a new database (the schema cannot hold two dimensions)."
        )


# -- conversations (migration 0004) ----------------------------------------------------------------------
Feedback = Literal["up", "down"]
FEEDBACK_VALUES: tuple[Feedback, ...] = ("up", "down")


@dataclass(frozen=True)
class Conversation:
    """A served question, its answer, the chunks the answer cited, and the user's verdict."""

    id: str
    question: str
    answer: str
    chunk_ids: tuple[str, ...] = ()
    feedback: Feedback | None = None
    model_version: str | None = None
    created_at: datetime | None = None


def check_feedback(feedback: str | None) -> Feedback | None:
    """Refuse anything but up, down or None before it reaches the store."""
    if feedback is not None and feedback not in FEEDBACK_VALUES:
        raise ValueError(f"feedback must be 'up', 'down' or None, got {feedback!r}")
    return cast("Feedback | None", feedback)


# -- published model versions (migrations 0001 and 0008) -------------------------------------------------
class ModelVersionNotFoundError(StoreError):
    """A model version (or an earlier activation to roll back to) that the store does not have."""


@dataclass(frozen=True)
class ModelVersion:
    """One published version of a model repository, as the `model_versions` table holds it."""

    version: str
    """The tag in its repository: v1, v2, ..."""
    repo_id: str
    """The repository (owner/name) on the Hub or in the local registry."""
    revision: str | None = None
    """The commit the tag points at (what a loader pins)."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """The evaluation metrics the version was judged by."""
    config: dict[str, Any] = field(default_factory=dict)
    """Where it lives (registry, location), how it was made (run, export), and the redacted training config."""
    created_at: datetime | None = None
    is_active: bool = False
    """Whether the server loads this version (at most one is active)."""


def model_version_from_row(row: Mapping[str, Any]) -> ModelVersion:
    """A ModelVersion from a row or a promote/rollback function's JSON (dates as text or datetime)."""
    created = row.get("created_at")
    if isinstance(created, str):
        created = datetime.fromisoformat(created)
    return ModelVersion(version=str(row["version"]), repo_id=str(row["repo_id"]), revision=row.get("revision"),
                        metrics=dict(row.get("metrics") or {}), config=dict(row.get("config") or {}),
                        created_at=created, is_active=bool(row.get("is_active")))


# -- data balance (migration 0009): what the training data is made of --------------------------------------
BalanceDimension = Literal["source", "owner", "document"]


@dataclass(frozen=True)
class BalanceRow:
    """How much of the store one group holds: a source, an owner (a metadata value) or one document."""

    dimension: BalanceDimension
    group: str
    """The source name, the owner value ("" for documents without one) or the document id."""
    documents: int
    chunks: int
    qa_pairs: int


def balance_rows(data: Any) -> list[BalanceRow]:
    """BalanceRows from promptly_data_balance's JSON (the same for every backend)."""
    return [BalanceRow(dimension=r["dimension"], group=str(r["group"] or ""), documents=int(r["documents"]),
                       chunks=int(r["chunks"]), qa_pairs=int(r["qa_pairs"])) for r in (data or [])]
