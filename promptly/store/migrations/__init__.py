"""Numbered SQL migrations: the single source of the schema for every backend."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

DIM_PLACEHOLDER = "{{embedding_dim}}"


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
    """Every migration as one script, for Supabase's SQL editor or `psql -f`."""
    parts = [f"-- promptly migration {m.version}_{m.name}\n{m.sql}" for m in load_migrations(embedding_dim)]
    return "\n\n".join(parts)
