"""The `promptly` command as a user runs it: verbs, Hydra overrides, exit codes, messages."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from promptly.store.base import StoreConnectionError
from promptly.store.postgres import PostgresStore
from promptly.verbs.cli import VERBS, main

from .cli_batch import shared_runner


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`promptly <args>` in a process of its own (forked from the session's driver, which imported the verbs
    once: tests/cli_batch.py), with PROMPTLY_HOME at `cwd`."""
    env = {**os.environ, "PROMPTLY_HOME": str(cwd), "HYDRA_FULL_ERROR": "0"}
    return shared_runner().run(args, cwd, env, timeout=600)


def test_help_lists_every_verb(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for verb in VERBS:
        assert verb in out


def test_unknown_verb_and_action_fail_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["ingets"])
    assert exit_info.value.code == 2
    assert "unknown verb 'ingets'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["db", "migrat"])
    assert "migrate, status, sql" in capsys.readouterr().err


def test_db_sql_prints_the_schema_for_the_configured_dimension(tmp_path: Path) -> None:
    result = run_cli("db", "sql", "embedder.dimension=768", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "vector(768)" in result.stdout and "create or replace function match_chunks" in result.stdout
    assert not (tmp_path / ".promptly").exists()  # printing SQL starts no database


def test_wrong_store_option_lists_the_valid_ones(tmp_path: Path) -> None:
    result = run_cli("db", "status", "store=mysql", cwd=tmp_path)
    assert result.returncode != 0
    assert "unknown option store=mysql" in result.stderr
    for option in ("embedded", "postgres", "supabase"):
        assert option in result.stderr
    assert "base_postgres_store" not in result.stderr and "search path" not in result.stderr  # no schema noise


@pytest.mark.parametrize(("override", "suggestion"), [
    ("retrieval.kk=3", "did you mean retrieval.k?"),
    ("data.batch_szie=4", "did you mean data.batch_size"),
    ("ask_format=json", "did you mean format?"),
    ("store=postgress", "did you mean store=postgres?"),
])
def test_a_mistyped_key_or_option_names_the_nearest_valid_one(override: str, suggestion: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["ask", "Which port?", override])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert suggestion in err and "+" + override not in err  # Hydra's "use +key=..." would make the typo stick
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert os.environ.get("HYDRA_FULL_ERROR") is None  # the CLI's own switch does not leak to later commands


def test_bad_database_url_names_the_setting_not_the_password() -> None:
    store = PostgresStore("postgresql://promptly:hunter2-secret@127.0.0.1:1/promptly", embedding_dim=384,
                          connect_timeout=2)
    with pytest.raises(StoreConnectionError) as err:
        store.status()
    message = str(err.value)
    assert "store.url=" in message and "127.0.0.1" in message
    assert "hunter2-secret" not in message


def test_empty_database_url_is_refused() -> None:
    with pytest.raises(StoreConnectionError, match=r"store\.url is empty"):
        PostgresStore("", embedding_dim=384)


@pytest.mark.slow
def test_ingest_end_to_end_through_the_cli(tmp_path: Path) -> None:
    """`promptly ingest` then `promptly db status` on the embedded default store."""
    docs = tmp_path / "data" / "docs"
    docs.mkdir(parents=True)
    (docs / "proxy.md").write_text("# Proxy\n\nThe proxy listens on port 8080 and retries twice.")
    (docs / "queue.txt").write_text("The queue keeps messages for 7 days unless retention is changed.")
    (docs / "broken.md").write_bytes(b"\x00\x01binary")
    (tmp_path / "data" / "qa.jsonl").write_text(
        '{"question": "Which port does the proxy use?", "answer": "Port 8080.", "document_id": "proxy.md"}\n')
    overrides = [f"paths.data_dir={tmp_path / 'data'}", "ingest.progress=false"]
    first = run_cli("ingest", *overrides, cwd=tmp_path)
    assert first.returncode == 1, first.stderr  # the broken file makes the command fail...
    assert "broken.md" in first.stderr and "binary" in first.stderr
    status = run_cli("db", "status", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    table = {line.split("│")[1].strip(): line.split("│")[2].strip()
             for line in status.stdout.splitlines() if line.count("│") == 3}
    assert (table["documents"], table["qa pairs"]) == ("2", "1")  # ...but everything else is stored
    assert (table["of them generated"], table["conversations"], table["of them liked"]) == ("0", "0", "0")
    (docs / "broken.md").unlink()
    again = run_cli("ingest", *overrides, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "│     0 │       0 │         2 │" in again.stderr  # added, updated, unchanged
    assert (tmp_path / "logs" / "ingest" / "runs").is_dir()


def test_unreachable_store_is_one_clear_line(tmp_path: Path) -> None:
    result = run_cli("db", "status", "store=postgres",
                     "store.url=postgresql://admin:s3cret-pw@127.0.0.1:1/x", "store.connect_timeout=2", cwd=tmp_path)
    assert result.returncode == 1
    assert "error: cannot connect to Postgres at store.url=" in result.stderr
    assert "Traceback" not in result.stderr and "s3cret-pw" not in result.stderr + result.stdout


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    from omegaconf import OmegaConf

    from promptly.errors import ConfigError, PromptlyError
    from promptly.store.base import StoreError
    from promptly.verbs.entry import report_user_errors

    def failing(error: BaseException):  # type: ignore[no-untyped-def]
        def task(cfg):  # type: ignore[no-untyped-def]
            raise error
        return report_user_errors(task)

    cfg = OmegaConf.create({})
    for error in (ConfigError("data.batch_size must be positive"), StoreError("cannot connect to store.url=x")):
        assert isinstance(error, PromptlyError)
        with pytest.raises(SystemExit) as exit_info:
            failing(error)(cfg)
        assert exit_info.value.code == 1
        assert f"error: {error}" in capsys.readouterr().err
    # A builtin error is a bug, not a user's mistake: it propagates with its traceback.
    with pytest.raises(ValueError, match="unexpected"):
        failing(ValueError("unexpected"))(cfg)
    with pytest.raises(FileNotFoundError):
        failing(FileNotFoundError("a bug's missing file"))(cfg)


def test_a_secret_in_a_user_error_is_masked(capsys: pytest.CaptureFixture[str]) -> None:
    from omegaconf import OmegaConf

    from promptly.errors import ConfigError
    from promptly.verbs.entry import report_user_errors

    def task(cfg):  # type: ignore[no-untyped-def]
        raise ConfigError("bad store.url=postgresql://admin:hunter2-pw@db/x and key sk-abcdefghijklmnopqrstuvwx")

    with pytest.raises(SystemExit):
        report_user_errors(task)(OmegaConf.create({}))
    err = capsys.readouterr().err
    assert "hunter2-pw" not in err and "sk-abcdefghijklmnopqrstuvwx" not in err and "***" in err
