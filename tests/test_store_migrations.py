"""The ledger of applied migrations is exact: a fresh store applies every shipped .sql file, once, in order,
and reports none pending (a migration left out of the package, or applied twice, shows here)."""

from __future__ import annotations

from promptly.store.embedded import EmbeddedPostgresStore
from promptly.store.migrations import load_migrations
from promptly.store.postgres import PostgresStore

from .conftest import DIM, shipped_migrations


def test_the_package_loads_every_migration_file_in_order() -> None:
    assert tuple(f"{m.version}_{m.name}" for m in load_migrations(DIM)) == shipped_migrations()


def test_a_fresh_postgres_store_applies_every_migration_exactly(pg_url: str) -> None:
    with PostgresStore(pg_url, embedding_dim=DIM) as store:
        assert store.status().pending_migrations == shipped_migrations()
        applied = store.migrate()
        assert len(applied) == len(shipped_migrations())
        status = store.status()
        assert status.applied_migrations == tuple(m.split("_", 1)[0] for m in shipped_migrations())
        assert status.pending_migrations == ()
        assert store.migrate() == []  # idempotent: nothing applied twice
        assert store.status().applied_migrations == status.applied_migrations


def test_the_embedded_store_reports_every_migration_applied(embedded_contract_store: EmbeddedPostgresStore) -> None:
    status = embedded_contract_store.status()
    assert status.applied_migrations == tuple(m.split("_", 1)[0] for m in shipped_migrations())
    assert status.pending_migrations == ()
