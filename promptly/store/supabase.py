"""ChunkStore on Supabase over its REST API (PostgREST), for hosts that cannot open a Postgres port."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import httpx
from postgrest import APIError, APIResponse, CountMethod, ReturnMethod
from supabase import Client, ClientOptions, create_client

from promptly.records import Chunk, Document, QAOrigin, QAPair, SearchHit, SearchMode, Split, StoreStatus
from promptly.store.base import (
    STATUS_COUNTS,
    BalanceRow,
    Conversation,
    Feedback,
    Fusion,
    ModelVersion,
    ModelVersionNotFoundError,
    SchemaMismatchError,
    StoreConnectionError,
    StoreError,
    balance_rows,
    check_dimension,
    check_feedback,
    fusion_arguments,
    model_version_from_row,
)
from promptly.store.migrations import load_migrations
from promptly.textsafe import clean_chunk, clean_document, clean_pair, clean_text, clean_value

SCHEMA_HINT = (
    "REST cannot run DDL: apply the schema once, either by pasting the output of "
    "`promptly db sql > schema.sql` into Supabase's SQL editor, or with "
    "`promptly db migrate store=postgres store.url=<Supabase connection string>`"
)
_MISSING = {"PGRST202", "PGRST205", "42P01", "42883", "404"}  # unknown function or table
_INVALID = {"PGRST301", "PGRST302", "PGRST303", "401"}  # the key itself was rejected
_DENIED = {"42501", "403"}  # a valid key whose role may not do this (grants, row-level security)
_FILTER_CHUNK = 100  # ids per `in.(...)` filter, to keep URLs well under gateway limits



class SupabaseStore:
    """supabase-py over REST. The client is built on first use, so composing a config needs no secrets."""

    backend = "supabase"
    _CHUNK_COLUMNS = "document_id,ordinal,content,token_count,metadata,embedding"

    def __init__(self, url: str, key: str, embedding_dim: int, schema: str = "public",
                 timeout: float = 30.0, page_size: int = 1000) -> None:
        self._url, self._key, self._schema = url, key, schema
        self.embedding_dim = embedding_dim
        self._timeout = timeout
        self.page_size = page_size  # Supabase caps a response at 1000 rows (max-rows) by default
        self._client: Client | None = None
        self._http: httpx.Client | None = None

    # -- connection ---------------------------------------------------------------------------
    @property
    def client(self) -> Client:
        if self._client is None:
            if not self._url:
                raise StoreConnectionError("store.url is empty: set it to the project URL, https://<ref>.supabase.co")
            if not self._key:
                raise StoreConnectionError("store.key is empty: set it to the project's service_role key "
                                           "(SUPABASE_SERVICE_KEY); the anon key can only read and search")
            if not re.match(r"^https?://[^/\s]+", self._url):
                raise StoreConnectionError(f"store.url={self._url!r} is not an http(s) URL")
            self._http = httpx.Client(timeout=self._timeout)
            options = ClientOptions(schema=self._schema, auto_refresh_token=False, persist_session=False,
                                    httpx_client=self._http)
            self._client = create_client(self._url, self._key, options)
        return self._client

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        self._client, self._http = None, None

    def __enter__(self) -> SupabaseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, query: Any, what: str) -> APIResponse:
        """Execute a postgrest-py builder, turning its errors into StoreErrors that never quote the key."""
        try:
            response: APIResponse = query.execute()
            return response
        except APIError as err:
            raise self._translate(err, what) from err
        except httpx.HTTPError as err:
            reason = self._scrub(str(err) or type(err).__name__)
            raise StoreConnectionError(
                f"cannot reach Supabase at store.url={self._url} while {what}: {reason}") from err

    def _translate(self, err: APIError, what: str) -> StoreError:
        code = str(err.code or "")
        message = self._scrub(" ".join(str(p) for p in (err.message, err.details, err.hint) if p))
        refused = f"Supabase at store.url={self._url} refused the key in store.key while {what}"
        if code in _INVALID or (not code and re.search(r"api key|jwt", message, re.IGNORECASE)):
            return StoreConnectionError(f"{refused} ({code or 'invalid key'}): {message}. Copy the "
                                        "service_role key from Project settings -> API into store.key.")
        if code in _DENIED:
            return StoreConnectionError(f"{refused} ({code}): {message}. Writes need the service_role "
                                        "key; the anon key can only read and search.")
        if code in _MISSING:
            return SchemaMismatchError(
                f"{self._where()} has no promptly schema ({code}: {message}). {SCHEMA_HINT}")
        return StoreError(f"Supabase error while {what} ({code}): {message}")

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _where(self) -> str:
        return f"the Supabase project at store.url={self._url}"

    # -- schema -------------------------------------------------------------------------------
    def stored_dimension(self) -> int | None:
        """The vector dimension of the chunks table, or None when the schema is not there."""
        try:
            data: Any = self._run(self.client.rpc("promptly_embedding_dim"), "reading the schema").data
        except SchemaMismatchError:
            return None
        return int(data) if data is not None else None

    def _applied(self) -> list[str] | None:
        """Versions in promptly_migrations, or None when that table is not exposed (SQL-editor installs)."""
        try:
            query = self.client.table("promptly_migrations").select("version").order("version")
            rows: Any = self._run(query, "reading promptly_migrations").data
        except SchemaMismatchError:
            return None
        return [str(r["version"]) for r in rows]

    def _pending(self, applied: list[str] | None, dim: int | None) -> list[str]:
        migrations = [f"{m.version}_{m.name}" for m in load_migrations(self.embedding_dim)]
        if applied is None:  # no record of versions: all pending if the schema is absent, else unknown
            return [] if dim else migrations
        return [m for m in migrations if m.partition("_")[0] not in applied]

    def migrate(self) -> list[str]:
        """Check, never change: REST has no DDL, so a missing schema is an error that says how to apply it."""
        dim = self.stored_dimension()
        if dim is None:
            raise SchemaMismatchError(f"{self._where()} has no promptly schema. {SCHEMA_HINT}")
        check_dimension(dim, self.embedding_dim, self._where())
        pending = self._pending(self._applied(), dim)
        if pending:
            raise SchemaMismatchError(
                f"{self._where()} is missing migrations {', '.join(pending)}. {SCHEMA_HINT}")
        return []

    def status(self) -> StoreStatus:
        applied, dim = self._applied(), self.stored_dimension()
        counts = dict.fromkeys(STATUS_COUNTS, 0)
        if dim is not None:
            for name, (needs, table, column, value) in STATUS_COUNTS.items():
                if applied is not None and needs not in applied:  # None: the ledger is not exposed, the
                    continue                                        # SQL-editor script installs every migration
                query = self.client.table(table).select("*", count=CountMethod.exact, head=True)
                query = query.eq(column, value) if column else query
                counts[name] = self._run(query, f"counting {name}").count or 0
        return StoreStatus(backend=self.backend, applied_migrations=tuple(applied or ()),
                           pending_migrations=tuple(self._pending(applied, dim)), embedding_dim=dim, **counts)

    # -- paging -------------------------------------------------------------------------------
    def _pages(self, make_query: Callable[[], Any], batch_size: int, what: str) -> Iterator[dict[str, Any]]:
        """Offset pages until an empty one: a short page may just be the server's max-rows cap."""
        size, start = max(1, min(batch_size, self.page_size)), 0
        while True:
            rows: Any = self._run(make_query().range(start, start + size - 1), what).data
            if not rows:
                return
            yield from rows
            start += len(rows)

    # -- documents and chunks -----------------------------------------------------------------
    def document_hashes(self, source: str | None = None) -> dict[str, str]:
        def query() -> Any:
            q = self.client.table("documents").select("id,content_hash")
            return (q.eq("source", clean_text(source)) if source is not None else q).order("id")
        rows = self._pages(query, self.page_size, "reading document hashes")
        return {r["id"]: r["content_hash"] for r in rows}

    def document_splits(self) -> dict[str, Split | None]:
        def query() -> Any:
            return self.client.table("documents").select("id,split").order("id")
        return {r["id"]: r["split"] for r in self._pages(query, self.page_size, "reading document splits")}

    def set_document_splits(self, splits: Mapping[str, Split]) -> int:
        if not splits:
            return 0
        query = self.client.rpc("promptly_set_document_splits", {"splits": clean_value(dict(splits))})
        data: Any = self._run(query, "writing document splits").data
        return int(data)

    def upsert_document(self, document: Document, chunks: Sequence[Chunk]) -> int:
        """One rpc call, hence one transaction: a failure leaves the previous version whole."""
        document = clean_document(document)
        chunks = [clean_chunk(c, document.id) for c in chunks]
        doc = {"id": document.id, "source": document.source, "uri": document.uri, "title": document.title,
               "content_hash": document.content_hash, "metadata": document.metadata, "split": document.split}
        new_chunks = [{"id": c.id, "ordinal": c.ordinal, "content": c.content, "token_count": c.token_count,
                       "metadata": c.metadata, "embedding": _vector_text(c)} for c in chunks]
        query = self.client.rpc("promptly_upsert_document", {"doc": doc, "new_chunks": new_chunks})
        data: Any = self._run(query, f"writing document {document.id!r}").data
        return int(data)

    def delete_documents(self, document_ids: Iterable[str]) -> int:
        return self._delete_ids("documents", document_ids, "deleting documents")

    def _delete_ids(self, table: str, ids: Iterable[str], what: str) -> int:
        """DELETE ... WHERE id IN (...), in groups that keep the URL short; return rows deleted."""
        deleted = 0
        for group in _groups(sorted({clean_text(i) for i in ids})):
            deleted += len(self._run(self.client.table(table).delete().in_("id", group), what).data)
        return deleted

    def iter_chunks(
        self, document_ids: Sequence[str] | None = None, batch_size: int = 500
    ) -> Iterator[Chunk]:
        # Over 100 ids, groups go in Python's sort order; within a group the database orders the rows.
        for group in _groups(sorted({clean_text(i) for i in document_ids})) if document_ids else [None]:
            def query(group: list[str] | None = group) -> Any:
                q = self.client.table("chunks").select(self._CHUNK_COLUMNS)
                q = q.in_("document_id", group) if group else q
                return q.order("document_id").order("ordinal")
            yield from map(_chunk_from_row, self._pages(query, batch_size, "reading chunks"))

    def existing_chunk_ids(self, chunk_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for group in _groups(sorted(set(chunk_ids))):
            query = self.client.table("chunks").select("id").in_("id", group)
            rows: Any = self._run(query, "checking chunk ids").data
            found.update(str(r["id"]) for r in rows)
        return found

    def get_chunks(self, chunk_ids: Sequence[str]) -> dict[str, Chunk]:
        found: dict[str, Chunk] = {}
        for group in _groups(sorted(set(chunk_ids))):
            query = self.client.table("chunks").select(self._CHUNK_COLUMNS).in_("id", group)
            rows: Any = self._run(query, "reading chunks").data
            found.update((c.id, c) for c in map(_chunk_from_row, rows))
        return found

    # -- QA pairs -----------------------------------------------------------------------------
    def upsert_qa_pairs(self, pairs: Sequence[QAPair]) -> int:
        """A repeated id: the last wins, as in the psycopg store (one statement cannot touch a row twice)."""
        rows = {p.id: {"id": p.id, "question": p.question, "answer": p.answer, "document_id": p.document_id,
                       "chunk_ids": list(p.chunk_ids), "split": p.split, "origin": p.origin}
                for p in (clean_pair(q).with_id() for q in pairs)}
        batch = list(rows.values())
        for start in range(0, len(batch), 500):
            query = self.client.table("qa_pairs").upsert(batch[start:start + 500], on_conflict="id",
                                                         returning=ReturnMethod.minimal)
            self._run(query, "writing QA pairs")
        return len(pairs)

    def iter_qa_pairs(self, split: Split | None = None, batch_size: int = 500,
                      origin: QAOrigin | None = None) -> Iterator[QAPair]:
        def query() -> Any:
            q = self.client.table("qa_pairs").select("id,question,answer,document_id,chunk_ids,split,origin")
            q = q.eq("split", split) if split else q
            return (q.eq("origin", origin) if origin else q).order("document_id").order("id")
        for r in self._pages(query, batch_size, "reading QA pairs"):
            yield QAPair(question=r["question"], answer=r["answer"], document_id=r["document_id"],
                         split=r["split"], chunk_ids=tuple(r["chunk_ids"] or ()), id=r["id"], origin=r["origin"])

    def delete_qa_pairs(self, pair_ids: Iterable[str]) -> int:
        return self._delete_ids("qa_pairs", pair_ids, "deleting QA pairs")

    # -- conversations ------------------------------------------------------------------------
    def add_conversation(self, question: str, answer: str, chunk_ids: Sequence[str] = (),
                         model_version: str | None = None, feedback: Feedback | None = None) -> str:
        """Insert with a client-made id and no read-back: the anonymous role may write but not read."""
        conversation_id = str(uuid.uuid4())
        row = clean_value({"id": conversation_id, "question": question, "answer": answer,
                           "chunk_ids": list(chunk_ids), "feedback": check_feedback(feedback),
                           "model_version": model_version})
        self._run(self.client.table("conversations").insert(row, returning=ReturnMethod.minimal),
                  "recording a conversation")
        return conversation_id

    def set_feedback(self, conversation_id: str, feedback: Feedback | None) -> bool:
        params = {"conversation_id": str(uuid.UUID(conversation_id)), "new_feedback": check_feedback(feedback)}
        return bool(self._run(self.client.rpc("promptly_set_feedback", params), "setting feedback").data)

    def iter_conversations(self, feedback: Feedback | None = None, batch_size: int = 500
                           ) -> Iterator[Conversation]:
        def query() -> Any:
            q = self.client.table("conversations").select(
                "id,question,answer,chunk_ids,feedback,model_version,created_at")
            return (q.eq("feedback", check_feedback(feedback)) if feedback else q).order("created_at").order("id")
        for r in self._pages(query, batch_size, "reading conversations"):
            yield Conversation(id=r["id"], question=r["question"], answer=r["answer"],
                               chunk_ids=tuple(r["chunk_ids"] or ()), feedback=r["feedback"],
                               model_version=r["model_version"], created_at=r["created_at"])

    # -- published model versions (migration 0008) ------------------------------------------------
    _VERSION_COLUMNS = "version,repo_id,revision,metrics,config,created_at,is_active"

    def add_model_version(self, version: ModelVersion) -> None:
        row = clean_value({"version": version.version, "repo_id": version.repo_id, "revision": version.revision,
                           "metrics": version.metrics, "config": version.config})
        try:
            self._run(self.client.table("model_versions").insert(row, returning=ReturnMethod.minimal),
                      "recording a model version")
        except StoreError as err:
            if isinstance(err.__cause__, APIError) and err.__cause__.code == "23505":
                raise StoreError(f"model_versions already holds version {version.version} of "
                                 f"{version.repo_id}") from None
            raise

    def list_model_versions(self, repo_id: str | None = None) -> list[ModelVersion]:
        def query() -> Any:
            q = self.client.table("model_versions").select(self._VERSION_COLUMNS)
            q = q.eq("repo_id", clean_text(repo_id)) if repo_id else q
            return q.order("created_at").order("repo_id").order("version")
        return [model_version_from_row(r) for r in self._pages(query, self.page_size, "reading model versions")]

    def active_model_version(self) -> ModelVersion | None:
        query = self.client.table("model_versions").select(self._VERSION_COLUMNS).eq("is_active", True)
        rows: Any = self._run(query, "reading the active model version").data
        return model_version_from_row(rows[0]) if rows else None

    def promote_model_version(self, repo_id: str, version: str) -> ModelVersion:
        params = clean_value({"target_repo_id": repo_id, "target_version": version})
        return self._activate(self.client.rpc("promptly_promote_model_version", params), "promoting a version")

    def rollback_model_version(self) -> ModelVersion:
        return self._activate(self.client.rpc("promptly_rollback_model_version"), "rolling back")

    def _activate(self, query: Any, what: str) -> ModelVersion:
        """One rpc call (one transaction); the function's no_data_found (P0002) is the user's error."""
        try:
            data: Any = self._run(query, what).data
        except StoreError as err:
            cause = err.__cause__
            if isinstance(cause, APIError) and cause.code == "P0002":
                raise ModelVersionNotFoundError(self._scrub(str(cause.message))) from None
            raise
        return model_version_from_row(data)

    # -- data balance (migration 0009) ------------------------------------------------------------
    def data_balance(self, owner_key: str = "owner") -> list[BalanceRow]:
        query = self.client.rpc("promptly_data_balance", {"owner_key": clean_text(owner_key)})
        return balance_rows(self._run(query, "counting the data balance").data)

    # -- search -------------------------------------------------------------------------------
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
        params = {"query_embedding": _format_vector(query_embedding), "query_text": clean_text(query_text),
                  "match_count": k, "filter": clean_value(filter or {}), "mode": mode,
                  **fusion_arguments(full_text_weight, semantic_weight, rrf_k, candidates, fusion)}
        if viewer is not None:
            params["viewer"] = clean_text(viewer)
        rows: Any = self._run(self.client.rpc("match_chunks", params), "searching").data
        return [SearchHit(chunk_id=str(r["id"]), document_id=r["document_id"], ordinal=r["ordinal"],
                          content=r["content"], metadata=r["metadata"] or {}, score=float(r["score"]))
                for r in rows]


def _chunk_from_row(r: dict[str, Any]) -> Chunk:
    return Chunk(document_id=r["document_id"], ordinal=r["ordinal"], content=r["content"],
                 token_count=r["token_count"], metadata=r["metadata"] or {},
                 embedding=tuple(float(x) for x in json.loads(r["embedding"])))


def _format_vector(values: Sequence[float]) -> str:
    """pgvector's text form '[0.1,0.2]', which promptly_upsert_document and match_chunks cast to vector."""
    return "[" + ",".join(repr(float(x)) for x in values) + "]"


def _vector_text(chunk: Chunk) -> str:
    if chunk.embedding is None:
        raise ValueError(f"chunk {chunk.ordinal} of {chunk.document_id!r} has no embedding")
    return _format_vector(chunk.embedding)


def _groups(ids: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), _FILTER_CHUNK):
        yield ids[start:start + _FILTER_CHUNK]
