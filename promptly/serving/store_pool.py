"""A pool of store connections: each request borrows its own, so no connection is used by two threads.

A psycopg connection is not safe across concurrent requests (one transaction at a time), so the server
keeps `size` ChunkStore objects, each with its own connection, and hands one to each request for the
length of a store call. This works for every backend the same way (a Supabase client per slot too),
without changing the stores.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from promptly.store.base import ChunkStore, StoreConnectionError

log = logging.getLogger(__name__)


class StorePool:
    """At most `size` stores, made on first need by `factory`, borrowed with `with pool.store() as s`."""

    def __init__(self, factory: Callable[[], ChunkStore], size: int, timeout_s: float = 30.0) -> None:
        self.factory, self.size, self.timeout_s = factory, size, timeout_s
        self._idle: queue.LifoQueue[ChunkStore] = queue.LifoQueue()
        self._made = 0
        self._all: list[ChunkStore] = []
        self._lock = threading.Lock()

    @contextmanager
    def store(self) -> Iterator[ChunkStore]:
        store = self._borrow()
        try:
            yield store
        except StoreConnectionError:
            store.close()  # reconnects on next use (the stores connect lazily)
            raise
        finally:
            self._idle.put(store)

    def _borrow(self) -> ChunkStore:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            make = self._made < self.size
            self._made += make
        if make:
            store = self.factory()
            self._all.append(store)
            return store
        try:
            return self._idle.get(timeout=self.timeout_s)
        except queue.Empty:
            raise StoreConnectionError(f"no store connection free within {self.timeout_s:.0f} s "
                                       "(raise serve.store_pool_size)") from None

    def close(self) -> None:
        for store in self._all:
            try:
                store.close()
            except Exception:  # closing at shutdown: one broken connection must not hide the others
                log.debug("closing a pooled store failed", exc_info=True)
