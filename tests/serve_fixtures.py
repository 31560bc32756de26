"""Shared by the tests/test_serve_*.py files: a writable copy of the ingested sample corpus and the
composed `promptly serve` config on the tiny model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO_ROOT, compose, resolved, scratch_database

QUESTION = "How many passphrases can a single driftsync repository hold?"


@pytest.fixture(scope="module")
def serve_db(pg_server, ingested_url: str) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A copy of the ingested sample corpus (Postgres template copy: no re-embedding) the server may write to."""
    with scratch_database(pg_server, template="sample_corpus", prefix="serve") as (_, url):
        yield url


def serve_cfg(home: Path, url: str, *overrides: str):  # type: ignore[no-untyped-def]
    """`promptly serve` on the tiny model (random weights: answers are noise, citations are real). Abstention
    is off (every question is generated for) unless an override sets evidence.abstain_below."""
    return resolved(compose("serve", [
        f"paths.data_dir={REPO_ROOT / 'sample_data'}", f"paths.state_dir={home / 'state'}",
        f"paths.log_dir={home / 'logs'}", "store=postgres", f"store.url='{url}'", "model=tiny",
        "model.tiny.num_hidden_layers=2", "generation.max_new_tokens=8", "serve.port=0", "evidence.abstain_below=0",
        *overrides]))
