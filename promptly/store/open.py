"""One way to open a store for a command: `with opened_store(cfg.store) as store:`.

Every verb built the store from its config and closed it in a `finally` of its own; a forgotten close
leaves a connection (or an embedded server) behind, so the pairing lives here once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hydra.utils import instantiate

from promptly.store.base import ChunkStore


@contextmanager
def opened_store(store_cfg: Any) -> Iterator[ChunkStore]:
    """The store that `store_cfg` (a `store=...` config node with its `_target_`) builds, closed on exit
    whether the block returns or raises."""
    store: ChunkStore = instantiate(store_cfg)
    try:
        yield store
    finally:
        store.close()
