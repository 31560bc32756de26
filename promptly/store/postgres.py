"""ChunkStore on any Postgres URL with pgvector: embedded, local, or Supabase's connection string."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb, set_json_dumps
from psycopg.types.string import StrBinaryDumper, StrDumperUnknown

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
from promptly.store.migrations import LEDGER_DDL, load_migrations
from promptly.textsafe import clean_chunk, clean_document, clean_pair, clean_text, clean_value

_MIGRATION_LOCK = 7_412_033  # pg_advisory_xact_lock key: one migrator at a time


def redact_url(url: str) -> str:
    """The URL with its password removed, safe for messages and logs."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparseable Postgres URL>"
    params.pop("password", None)
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None})


def _without_password(text: str, url: str) -> str:
    """Driver messages may echo connection parameters: strip the password if it appears."""
    try:
        password = conninfo_to_dict(url).get("password")
    except psycopg.ProgrammingError:
        return text
    return text.replace(str(password), "***") if password else text



class _CleanStrDumper(StrDumperUnknown):
    """Every str parameter, as text: through promptly.textsafe's rule (no NUL, no lone surrogate)."""

    def dump(self, obj: str) -> Any:
        return super().dump(clean_text(obj))


class _CleanStrBinaryDumper(StrBinaryDumper):
    """Every str parameter, as binary: through promptly.textsafe's rule."""

    def dump(self, obj: str) -> Any:
        return super().dump(clean_text(obj))


def _clean_json_dumps(obj: Any) -> str:
    return json.dumps(clean_value(obj))


def install_text_rule(conn: psycopg.Connection[Any]) -> None:
    """Make every string this connection sends, and every Jsonb, follow promptly.textsafe's rule, so no
    query of any verb can fail with "cannot contain NUL" or an encoding error on a lone surrogate."""
    conn.adapters.register_dumper(str, _CleanStrBinaryDumper)
    conn.adapters.register_dumper(str, _CleanStrDumper)
    set_json_dumps(_clean_json_dumps, context=conn)


class PostgresStore:
    """psycopg 3 + pgvector. Connects lazily, so building one from config touches nothing."""

    backend = "postgres"

    def __init__(
        self, url: str, embedding_dim: int, connect_timeout: int = 10, setting_name: str = "store.url"
    ) -> None:
        if not url:
            raise StoreConnectionError(f"{setting_name} is empty: set it to a Postgres connection URL")
        self._url = url
        self.embedding_dim = embedding_dim
        self._connect_timeout = connect_timeout
        self._setting_name = setting_name
        self._conn: psycopg.Connection[Any] | None = None
        self._vector_registered = False

    # -- connection ---------------------------------------------------------------------------
    @property
    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg.connect(self._url, connect_timeout=self._connect_timeout)
            except psycopg.Error as err:
                reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                reason = _without_password(reason, self._url)
                raise StoreConnectionError(
                    f"cannot connect to Postgres at {self._setting_name}={redact_url(self._url)}: {reason}"
                ) from None
            install_text_rule(self._conn)
            self._vector_registered = False
            self._register_vector()
        return self._conn

    def _register_vector(self) -> None:
        assert self._conn is not None
        if self._vector_registered:
            return
        has_vector = self._conn.execute("select 1 from pg_type where typname = 'vector'").fetchone()
        self._conn.commit()
        if has_vector:
            register_vector(self._conn)
            self._vector_registered = True

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema -------------------------------------------------------------------------------
    def _applied(self) -> list[str]:
        exists = self.conn.execute("select to_regclass('public.promptly_migrations')").fetchone()
        if not exists or exists[0] is None:
            self.conn.commit()
            return []
        rows = self.conn.execute("select version from promptly_migrations order by version").fetchall()
        self.conn.commit()
        return [r[0] for r in rows]

    def stored_dimension(self) -> int | None:
        """The vector dimension of the chunks table, or None before the first migration."""
        row = self.conn.execute(
            "select atttypmod from pg_attribute where attrelid = to_regclass('public.chunks') "
            "and attname = 'embedding'"
        ).fetchone()
        self.conn.commit()
        return int(row[0]) if row else None

    def migrate(self) -> list[str]:
        check_dimension(self.stored_dimension(), self.embedding_dim, self._where())
        applied_now = []
        with self.conn.transaction():
            self.conn.execute("select pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            self.conn.execute(LEDGER_DDL)
            done = {r[0] for r in self.conn.execute("select version from promptly_migrations")}
            for migration in load_migrations(self.embedding_dim):
                if migration.version in done:
                    continue
                self.conn.execute(migration.sql.encode())
                self.conn.execute(
                    "insert into promptly_migrations (version, name) values (%s, %s)",
                    (migration.version, migration.name),
                )
                applied_now.append(f"{migration.version}_{migration.name}")
        self._vector_registered = False
        self._register_vector()
        return applied_now

    def ensure_schema(self) -> None:
        """Fail with a clear message unless every migration is applied for this dimension."""
        pending = self._pending()
        if pending:
            raise SchemaMismatchError(
                f"{self._where()} is missing migrations {', '.join(pending)}: run `promptly db migrate`"
            )
        check_dimension(self.stored_dimension(), self.embedding_dim, self._where())

    def _pending(self) -> list[str]:
        applied = set(self._applied())
        return [f"{m.version}_{m.name}" for m in load_migrations(self.embedding_dim) if m.version not in applied]

    def _where(self) -> str:
        return f"the Postgres store at {self._setting_name}={redact_url(self._url)}"

    def status(self) -> StoreStatus:
        applied = tuple(self._applied())
        counts = dict.fromkeys(STATUS_COUNTS, 0)
        if applied:
            for name, (needs, table, column, value) in STATUS_COUNTS.items():
                if needs in applied:
                    query = sql.SQL("select count(*) from {}").format(sql.Identifier(table))
                    if column:
                        query += sql.SQL(" where {} = {}").format(sql.Identifier(column), sql.Literal(value))
                    row = self.conn.execute(query).fetchone()
                    counts[name] = int(row[0]) if row else 0
            self.conn.commit()
        return StoreStatus(
            backend=self.backend,
            applied_migrations=applied,
            pending_migrations=tuple(self._pending()),
            embedding_dim=self.stored_dimension(),
            **counts,
        )

    # -- documents and chunks -----------------------------------------------------------------
    def document_hashes(self, source: str | None = None) -> dict[str, str]:
        if source is None:
            rows = self.conn.execute("select id, content_hash from documents").fetchall()
        else:
            rows = self.conn.execute(
                "select id, content_hash from documents where source = %s", (source,)
            ).fetchall()
        self.conn.commit()
        return {r[0]: r[1] for r in rows}

    def document_splits(self) -> dict[str, Split | None]:
        rows = self.conn.execute("select id, split from documents").fetchall()
        self.conn.commit()
        return {r[0]: r[1] for r in rows}

    def set_document_splits(self, splits: Mapping[str, Split]) -> int:
        if not splits:
            return 0
        with self.conn.transaction():
            row = self.conn.execute("select promptly_set_document_splits(%s)", (Jsonb(dict(splits)),)).fetchone()
        return int(row[0]) if row else 0

    def upsert_document(self, document: Document, chunks: Sequence[Chunk]) -> int:
        document = clean_document(document)
        chunks = [clean_chunk(c, document.id) for c in chunks]
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute(
                "insert into documents (id, source, uri, title, content_hash, metadata, split, ingested_at)"
                " values (%s, %s, %s, %s, %s, %s, %s, now())"
                " on conflict (id) do update set source = excluded.source, uri = excluded.uri,"
                " title = excluded.title, content_hash = excluded.content_hash,"
                " metadata = excluded.metadata, split = excluded.split, ingested_at = now()",
                (document.id, document.source, document.uri, document.title,
                 document.content_hash, Jsonb(document.metadata), document.split),
            )
            cur.execute("delete from chunks where document_id = %s", (document.id,))
            cur.executemany(
                "insert into chunks (id, document_id, ordinal, content, token_count, metadata, embedding)"
                " values (%s, %s, %s, %s, %s, %s, %s)",
                [
                    (c.id, document.id, c.ordinal, c.content, c.token_count, Jsonb(c.metadata),
                     np.asarray(_require_embedding(c), dtype=np.float32))
                    for c in chunks
                ],
            )
        return len(chunks)

    def _stream(self, cursor_name: str, query: str, params: Sequence[Any], batch_size: int) -> Iterator[Any]:
        """Rows of `query` through a server-side cursor, `batch_size` at a time.

        The cursor holds this connection's transaction until the iteration ends: do not run other
        queries on the same store while iterating (spool first, as the datamodule does).
        """
        with self.conn.transaction(), self.conn.cursor(name=cursor_name) as cur:
            cur.itersize = batch_size
            cur.execute(query.encode(), params)
            yield from cur

    def delete_documents(self, document_ids: Iterable[str]) -> int:
        ids = list(document_ids)
        if not ids:
            return 0
        with self.conn.transaction():
            rows = self.conn.execute(
                "delete from documents where id = any(%s) returning id", (ids,)
            ).fetchall()
        return len(rows)

    def iter_chunks(
        self, document_ids: Sequence[str] | None = None, batch_size: int = 500
    ) -> Iterator[Chunk]:
        where, params = ("where document_id = any(%s)", (list(document_ids),)) if document_ids else ("", ())
        rows = self._stream("promptly_iter_chunks",
                            "select document_id, ordinal, content, token_count, metadata, embedding from chunks "
                            f"{where} order by document_id, ordinal", params, batch_size)
        for doc_id, ordinal, content, tokens, metadata, embedding in rows:
            yield Chunk(
                document_id=doc_id, ordinal=ordinal, content=content, token_count=tokens,
                metadata=metadata, embedding=_as_tuple(embedding),
            )

    def existing_chunk_ids(self, chunk_ids: Sequence[str]) -> set[str]:
        if not chunk_ids:
            return set()
        rows = self.conn.execute(
            "select id::text from chunks where id = any(%s::uuid[])", (list(chunk_ids),)
        ).fetchall()
        self.conn.commit()
        return {r[0] for r in rows}

    def get_chunks(self, chunk_ids: Sequence[str]) -> dict[str, Chunk]:
        if not chunk_ids:
            return {}
        rows = self.conn.execute(
            "select document_id, ordinal, content, token_count, metadata, embedding from chunks"
            " where id = any(%s::uuid[])", (list(dict.fromkeys(chunk_ids)),)
        ).fetchall()
        self.conn.commit()
        chunks = (Chunk(document_id=d, ordinal=o, content=c, token_count=t, metadata=m, embedding=_as_tuple(e))
                  for d, o, c, t, m, e in rows)
        return {chunk.id: chunk for chunk in chunks}

    # -- QA pairs -----------------------------------------------------------------------------
    def upsert_qa_pairs(self, pairs: Sequence[QAPair]) -> int:
        if not pairs:
            return 0
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(
                "insert into qa_pairs (id, question, answer, document_id, chunk_ids, split, origin)"
                " values (%s, %s, %s, %s, %s::uuid[], %s, %s)"
                " on conflict (id) do update set question = excluded.question, answer = excluded.answer,"
                " document_id = excluded.document_id, chunk_ids = excluded.chunk_ids, split = excluded.split,"
                " origin = excluded.origin",
                [(p.id, p.question, p.answer, p.document_id, list(p.chunk_ids), p.split, p.origin)
                 for p in (clean_pair(q).with_id() for q in pairs)],
            )
        return len(pairs)

    def iter_qa_pairs(self, split: Split | None = None, batch_size: int = 500,
                      origin: QAOrigin | None = None) -> Iterator[QAPair]:
        conditions = [(c, v) for c, v in (("split = %s", split), ("origin = %s", origin)) if v]
        where = ("where " + " and ".join(c for c, _ in conditions)) if conditions else ""
        rows = self._stream("promptly_iter_qa",
                            "select id::text, question, answer, document_id, chunk_ids::text[], split, origin"
                            f" from qa_pairs {where} order by document_id, id", [v for _, v in conditions],
                            batch_size)
        for qa_id, question, answer, doc_id, chunk_ids, qa_split, qa_origin in rows:
            yield QAPair(question=question, answer=answer, document_id=doc_id, split=qa_split,
                         chunk_ids=tuple(chunk_ids or ()), id=qa_id, origin=qa_origin)

    def delete_qa_pairs(self, pair_ids: Iterable[str]) -> int:
        ids = list(pair_ids)
        if not ids:
            return 0
        with self.conn.transaction():
            rows = self.conn.execute("delete from qa_pairs where id = any(%s::uuid[]) returning id", (ids,)).fetchall()
        return len(rows)

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
        tuning = fusion_arguments(full_text_weight, semantic_weight, rrf_k, candidates, fusion)
        named = sql.SQL("").join(sql.SQL(", {} => {}").format(sql.Identifier(name), sql.Placeholder())
                                 for name in tuning)
        query = sql.SQL("select id::text, document_id, ordinal, content, metadata, score from match_chunks("
                        "%s::vector, %s, %s, %s::jsonb, %s{}, viewer => %s::text)").format(named)
        with self.conn.transaction():  # rolled back on error, so a bad mode leaves the connection usable
            rows = self.conn.execute(
                query,
                (np.asarray(query_embedding, dtype=np.float32), query_text, k, Jsonb(filter or {}), mode,
                 *tuning.values(), viewer),
            ).fetchall()
        return [SearchHit(chunk_id=r[0], document_id=r[1], ordinal=r[2], content=r[3],
                          metadata=r[4], score=float(r[5])) for r in rows]

    # -- conversations (migration 0004) ------------------------------------------------------------
    def add_conversation(self, question: str, answer: str, chunk_ids: Sequence[str] = (),
                         model_version: str | None = None, feedback: Feedback | None = None) -> str:
        conversation_id = str(uuid.uuid4())
        with self.conn.transaction():
            self.conn.execute(
                "insert into conversations (id, question, answer, chunk_ids, feedback, model_version)"
                " values (%s, %s, %s, %s::uuid[], %s, %s)",
                (conversation_id, question, answer, list(chunk_ids), check_feedback(feedback), model_version),
            )
        return conversation_id

    def set_feedback(self, conversation_id: str, feedback: Feedback | None) -> bool:
        with self.conn.transaction():
            row = self.conn.execute("select promptly_set_feedback(%s::uuid, %s)",
                                    (str(uuid.UUID(conversation_id)), check_feedback(feedback))).fetchone()
        return bool(row and row[0])

    def iter_conversations(self, feedback: Feedback | None = None, batch_size: int = 500
                           ) -> Iterator[Conversation]:
        where, params = ("where feedback = %s", (check_feedback(feedback),)) if feedback else ("", ())
        rows = self._stream("promptly_iter_conversations",
                            "select id::text, question, answer, chunk_ids::text[], feedback, model_version, created_at"
                            f" from conversations {where} order by created_at, id", params, batch_size)
        for conv_id, question, answer, chunk_ids, fb, version, created in rows:
            yield Conversation(id=conv_id, question=question, answer=answer,
                               chunk_ids=tuple(chunk_ids or ()), feedback=fb, model_version=version,
                               created_at=created)

    # -- published model versions (migration 0008) ------------------------------------------------
    _VERSION_COLUMNS = "version, repo_id, revision, metrics, config, created_at, is_active"

    def add_model_version(self, version: ModelVersion) -> None:
        with self.conn.transaction():
            row = self.conn.execute(
                "insert into model_versions (version, repo_id, revision, metrics, config)"
                " values (%s, %s, %s, %s, %s) on conflict (repo_id, version) do nothing returning version",
                (version.version, version.repo_id, version.revision, Jsonb(version.metrics), Jsonb(version.config)),
            ).fetchone()
        if row is None:
            raise StoreError(f"model_versions already holds version {version.version} of {version.repo_id}")

    def list_model_versions(self, repo_id: str | None = None) -> list[ModelVersion]:
        where, params = ("where repo_id = %s", (repo_id,)) if repo_id else ("", ())
        with self.conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(f"select {self._VERSION_COLUMNS} from model_versions {where}"
                               " order by created_at, repo_id, version", params).fetchall()
        self.conn.commit()
        return [model_version_from_row(r) for r in rows]

    def active_model_version(self) -> ModelVersion | None:
        with self.conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(f"select {self._VERSION_COLUMNS} from model_versions where is_active").fetchone()
        self.conn.commit()
        return model_version_from_row(row) if row else None

    def promote_model_version(self, repo_id: str, version: str) -> ModelVersion:
        return self._activate("select promptly_promote_model_version(%s, %s)", (repo_id, version))

    def rollback_model_version(self) -> ModelVersion:
        return self._activate("select promptly_rollback_model_version()", ())

    def _activate(self, query: str, params: Sequence[Any]) -> ModelVersion:
        """Run a promote/rollback function in its own transaction; its no_data_found is the user's error."""
        try:
            with self.conn.transaction():
                row = self.conn.execute(query.encode(), params).fetchone()
        except psycopg.errors.NoDataFound as err:
            raise ModelVersionNotFoundError(err.diag.message_primary or str(err)) from None
        assert row is not None and row[0] is not None
        return model_version_from_row(row[0])

    # -- data balance (migration 0009) ------------------------------------------------------------
    def data_balance(self, owner_key: str = "owner") -> list[BalanceRow]:
        row = self.conn.execute("select promptly_data_balance(%s)", (owner_key,)).fetchone()
        self.conn.commit()
        return balance_rows(row[0] if row else [])


def _require_embedding(chunk: Chunk) -> tuple[float, ...]:
    if chunk.embedding is None:
        raise ValueError(f"chunk {chunk.ordinal} of {chunk.document_id!r} has no embedding")
    return chunk.embedding


def _as_tuple(embedding: Any) -> tuple[float, ...]:
    """pgvector hands back numpy arrays or its Vector class depending on the cursor's format."""
    values = embedding.to_list() if hasattr(embedding, "to_list") else embedding
    return tuple(float(x) for x in values)
