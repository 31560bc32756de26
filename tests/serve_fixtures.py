"""Shared by the tests/test_serve_*.py files: a writable copy of the ingested sample corpus and the
composed `promptly serve` config on the tiny model."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from .conftest import REPO_ROOT, _database_url, compose, resolved

QUESTION = "How many passphrases can a single driftsync repository hold?"


@pytest.fixture(scope="module")
def serve_db(pg_server, ingested_url: str) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A copy of the ingested sample corpus (Postgres template copy: no re-embedding) the server may write to."""
    admin = pg_server.start()
    name = f"serve_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'create database "{name}" template "sample_corpus"')
    yield _database_url(admin, name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


def serve_cfg(home: Path, url: str, *overrides: str):  # type: ignore[no-untyped-def]
    """`promptly serve` on the tiny model (random weights: answers are noise, citations are real). Abstention
    is off (every question is generated for) unless an override sets evidence.abstain_below."""
    return resolved(compose("serve", [
        f"paths.data_dir={REPO_ROOT / 'sample_data'}", f"paths.state_dir={home / 'state'}",
        f"paths.log_dir={home / 'logs'}", "store=postgres", f"store.url='{url}'", "model=tiny",
        "model.tiny.num_hidden_layers=2", "generation.max_new_tokens=8", "serve.port=0", "evidence.abstain_below=0",
        *overrides]))
