"""opened_store: the store a config builds, usable inside the block and closed after it, raise or not."""

from __future__ import annotations

from typing import Any

import pytest
from omegaconf import OmegaConf

from promptly.store.open import opened_store
from promptly.store.postgres import PostgresStore

from .conftest import DIM


def _cfg(url: str) -> Any:
    return OmegaConf.create({"_target_": "promptly.store.postgres.PostgresStore", "url": url, "embedding_dim": DIM})


def test_the_store_is_built_from_its_config_and_closed_after_the_block(pg_url: str) -> None:
    with opened_store(_cfg(pg_url)) as store:
        assert isinstance(store, PostgresStore)
        store.migrate()
        assert store.status().applied_migrations
        conn = store.conn
        assert not conn.closed
    assert conn.closed


def test_the_store_is_closed_when_the_block_raises(pg_url: str) -> None:
    with pytest.raises(RuntimeError, match="boom"), opened_store(_cfg(pg_url)) as store:
        assert isinstance(store, PostgresStore)
        conn = store.conn
        raise RuntimeError("boom")
    assert conn.closed
