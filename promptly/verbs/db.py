"""`promptly db migrate | status | sql | stop`: the store's schema, what it holds, and the embedded server."""

from __future__ import annotations

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from promptly.errors import ConfigError
from promptly.records import StoreStatus
from promptly.store.migrations import render_schema_sql
from promptly.store.open import opened_store
from promptly.verbs.entry import hydra_entry
from promptly.verbs.task_wrapper import TaskOutput


def run(cfg: DictConfig, console: Console | None = None) -> StoreStatus | str:
    console = console or Console()
    if cfg.action == "sql":  # print the schema for Supabase's SQL editor; touches no database
        sql = render_schema_sql(int(cfg.embedder.dimension))
        print(sql)
        return sql
    if cfg.action == "stop":  # stop the embedded server without starting it first
        target = str(cfg.store.get("_target_", ""))
        if not target.endswith("EmbeddedPostgresStore"):
            raise ConfigError("promptly db stop stops the embedded server (store=embedded); this store is "
                              f"{target.rsplit('.', 1)[-1]}")
        from promptly.store.embedded import stop_server

        message = stop_server(cfg.store.data_dir, force=bool(cfg.get("force", False)))
        console.print(message)
        return message
    with opened_store(cfg.store) as store:
        if cfg.action == "migrate":
            applied = store.migrate()
            console.print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")
        elif cfg.action != "status":
            raise ConfigError(f"action must be migrate, status, sql or stop, got {cfg.action!r}")
        status = store.status()
    print_status(console, status)
    return status


def print_status(console: Console, status: StoreStatus) -> None:
    table = Table(title=f"promptly store ({status.backend})", show_header=False)
    table.add_row("applied migrations", ", ".join(status.applied_migrations) or "none")
    table.add_row("pending migrations", ", ".join(status.pending_migrations) or "none")
    table.add_row("embedding dimension", str(status.embedding_dim or "-"))
    table.add_row("documents", str(status.documents))
    table.add_row("chunks", str(status.chunks))
    table.add_row("qa pairs", str(status.qa_pairs))
    table.add_row("  of them generated", str(status.generated_qa_pairs))
    table.add_row("conversations", str(status.conversations))
    table.add_row("  of them liked", str(status.liked_conversations))
    table.add_row("model versions", str(status.model_versions))
    console.print(table)


def task(cfg: DictConfig) -> TaskOutput:
    return {}, {"result": run(cfg)}


main = hydra_entry("db", run_folder=False)(task)
