"""The embedded Postgres stops when the last process using it ends: on SIGTERM, and after a SIGKILL at the next
command's exit; `promptly db stop` stops it, and refuses while another process uses it unless forced. Two threads
of one process may open a new embedded store at once (a server's store check and model manager do)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from promptly.store.embedded import HANDLES_FILE, EmbeddedPostgresStore, running_postmaster, stop_server

from .conftest import SAMPLE_DOCS
from .test_cli import run_cli

PROMPTLY = [sys.executable, "-m", "promptly"]

HOLDER = """
import sys, time
from promptly.store.embedded import EmbeddedPostgresStore
store = EmbeddedPostgresStore(sys.argv[1], embedding_dim=384)
store.start()
print("ready", flush=True)
time.sleep(600)
"""


def wait_for_server(data_dir: Path, holder: subprocess.Popen[str], timeout_s: float = 120) -> int:
    """The postmaster's pid once the server is up and `holder` is registered as one of its users."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert holder.poll() is None, holder.communicate()
        pid = running_postmaster(data_dir)
        handles = data_dir / HANDLES_FILE
        if pid is not None and handles.is_file() and holder.pid in json.loads(handles.read_text() or "[]"):
            return pid
        time.sleep(0.1)
    raise AssertionError("the embedded server did not start")


def wait_stopped(data_dir: Path, timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while running_postmaster(data_dir) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def holder(data_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(data_dir)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_the_embedded_server_never_outlives_its_users(tmp_path: Path) -> None:
    data_dir = tmp_path / ".promptly" / "pgdata"
    env = {**os.environ, "PROMPTLY_HOME": str(tmp_path), "HYDRA_FULL_ERROR": "0"}

    # A verb stopped with SIGTERM mid-ingest rolls back and takes the server down with it.
    ingest = subprocess.Popen([*PROMPTLY, "ingest", f"ingest.source.path={SAMPLE_DOCS}", "ingest.qa.path=",
                               "ingest.progress=false"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    wait_for_server(data_dir, ingest)
    ingest.send_signal(signal.SIGTERM)
    assert ingest.wait(timeout=120) == 128 + signal.SIGTERM  # stopped mid-run, not finished
    assert wait_stopped(data_dir), "the server outlived a SIGTERM'd verb"

    # A user killed with SIGKILL leaves the server running; the next command reuses it and stops it at exit.
    killed = holder(data_dir)
    wait_for_server(data_dir, killed)
    killed.kill()
    killed.wait()
    assert running_postmaster(data_dir) is not None
    status = run_cli("db", "status", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert wait_stopped(data_dir), "the stale server was not stopped by the next command"
    assert "no embedded Postgres is running" in run_cli("db", "stop", cwd=tmp_path).stdout

    # db stop refuses while someone uses the server, and stops it when forced.
    busy = holder(data_dir)
    try:
        wait_for_server(data_dir, busy)
        refused = run_cli("db", "stop", cwd=tmp_path)
        assert refused.returncode == 1 and f"in use by process(es) {busy.pid}" in refused.stderr
        assert "force=true" in refused.stderr and "Traceback" not in refused.stderr
        assert running_postmaster(data_dir) is not None
        forced = run_cli("db", "stop", "force=true", cwd=tmp_path)
        assert forced.returncode == 0 and "stopped the embedded Postgres" in forced.stdout, forced.stderr
        assert running_postmaster(data_dir) is None
    finally:
        busy.kill()
        busy.wait()


def test_two_threads_opening_a_new_embedded_store_at_once_both_connect(tmp_path: Path) -> None:
    data_dir = tmp_path / "pg"
    stores = [EmbeddedPostgresStore(data_dir, embedding_dim=384) for _ in range(2)]
    together, errors = threading.Barrier(2), list[BaseException]()

    def open_store(store: EmbeddedPostgresStore) -> None:
        together.wait()
        try:
            store.conn.execute("select 1")
        except BaseException as err:  # the package's lock broke: "Unable to release an unaquired lock"
            errors.append(err)

    threads = [threading.Thread(target=open_store, args=(s,)) for s in stores]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert errors == []
    finally:
        for store in stores:
            store.close()
        stop_server(data_dir, force=True)
