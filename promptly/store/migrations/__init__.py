"""Numbered SQL migrations: the single source of the schema for every backend."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

DIM_PLACEHOLDER = "{{embedding_dim}}"

LEDGER_DDL = (
    "create table if not exists promptly_migrations ("
    " version text primary key, name text not null, applied_at timestamptz not null default now())"
)
"""The ledger of applied migrations; created before the first migration runs, on every backend."""


@dataclass(frozen=True)
class Migration:
    """One numbered .sql file, rendered for an embedding dimension."""

    version: str
    name: str
    sql: str


def load_migrations(embedding_dim: int) -> list[Migration]:
    """All migrations in order, with the embedding dimension filled in."""
    if embedding_dim <= 0:
        raise ValueError(f"embedding_dim must be positive, got {embedding_dim}")
    files = sorted(
        (f for f in resources.files(__package__).iterdir() if f.name.endswith(".sql")), key=lambda f: f.name
    )
    out = []
    for f in files:
        version, _, rest = f.name.partition("_")
        out.append(
            Migration(
                version=version,
                name=rest.removesuffix(".sql"),
                sql=f.read_text(encoding="utf-8").replace(DIM_PLACEHOLDER, str(embedding_dim)),
            )
        )
    return out


def render_schema_sql(embedding_dim: int) -> str:
    """Every migration as one script, for Supabase's SQL editor or `psql -f`.

    It records itself in the migrations ledger, so `promptly db status` and `promptly db migrate`
    know afterwards that the schema is there.
    """
    parts = [f"-- promptly: the migrations ledger\n{LEDGER_DDL};"]
    for m in load_migrations(embedding_dim):
        parts.append(
            f"-- promptly migration {m.version}_{m.name}\n{m.sql}\n"
            f"insert into promptly_migrations (version, name) values ('{m.version}', '{m.name}')"
            " on conflict (version) do nothing;"
        )
    return "begin;\n\n" + "\n\n".join(parts) + "\n\ncommit;\n"
