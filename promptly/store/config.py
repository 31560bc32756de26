"""Typed schemas of the `store` config group, one per option: its class's `_target_` and constructor arguments.

Required arguments are MISSING here and set by the option's file, often as an interpolation
(`embedding_dim: ${embedder.dimension}`, `url: ${oc.env:PROMPTLY_DATABASE_URL,""}`), which typed fields accept.
Nothing here imports the store modules: composing a config never loads a database driver.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING


@dataclass
class EmbeddedStoreConfig:
    """`store=embedded`: EmbeddedPostgresStore, a PostgreSQL + pgvector server started from Python."""

    _target_: str = "promptly.store.embedded.EmbeddedPostgresStore"
    data_dir: str = MISSING
    """The server's data folder: data persists there across commands."""
    embedding_dim: int = MISSING
    """Size of the stored vectors (the embedder's dimension)."""
    connect_timeout: int = 10
    """Seconds to wait for a connection."""


@dataclass
class PostgresStoreConfig:
    """`store=postgres`: PostgresStore, any Postgres with pgvector (Supabase's connection string included)."""

    _target_: str = "promptly.store.postgres.PostgresStore"
    url: str = MISSING
    """Connection URL (postgresql://user:password@host:port/db); keep the password in PROMPTLY_DATABASE_URL."""
    embedding_dim: int = MISSING
    """Size of the stored vectors (the embedder's dimension)."""
    connect_timeout: int = 10
    """Seconds to wait for a connection."""


@dataclass
class SupabaseStoreConfig:
    """`store=supabase`: SupabaseStore, Supabase over REST (PostgREST) with a service-role key."""

    _target_: str = "promptly.store.supabase.SupabaseStore"
    url: str = MISSING
    """The project URL, https://<ref>.supabase.co."""
    key: str = MISSING
    """A service-role key (for writes); keep it in SUPABASE_SERVICE_KEY."""
    embedding_dim: int = MISSING
    """Size of the stored vectors (the embedder's dimension)."""
    schema: str = "public"
    """Postgres schema the REST API exposes the tables in."""
    timeout: float = 30.0
    """Seconds per HTTP request."""
    page_size: int = 1000
    """Rows per request when reading many (Supabase caps a response at 1000 rows by default)."""
