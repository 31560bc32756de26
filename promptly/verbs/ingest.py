"""`promptly ingest`: load a source, sync it into the store, load its QA pairs, print a summary."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from promptly.errors import PromptlyError
from promptly.ingest.chunking import TokenChunker
from promptly.ingest.documents import SourceConfig, discover, load_source
from promptly.ingest.embedding import Embedder
from promptly.ingest.qa import QAReport, SplitConfig, load_qa_pairs
from promptly.ingest.redaction import RedactionReport, Redactor
from promptly.ingest.sync import DeletionGuard, SyncPlan, SyncReport, plan_sync, sync_documents
from promptly.store.base import ChunkStore
from promptly.store.open import opened_store
from promptly.verbs.entry import hydra_entry
from promptly.verbs.task_wrapper import TaskOutput

log = logging.getLogger(__name__)


@dataclass
class IngestResult:
    sync: SyncReport
    qa: QAReport | None
    redaction: RedactionReport | None = None
    plan: SyncPlan | None = None
    """Set by a dry run (`ingest.dry_run=true`), which writes nothing."""

    @property
    def ok(self) -> bool:
        return self.sync.ok and (self.qa is None or not self.qa.failed)


def prepare_store(store: ChunkStore, auto_migrate: bool) -> None:
    """Apply migrations (idempotent) or check they were applied, before any write."""
    if auto_migrate:
        store.migrate()
    else:
        ensure = getattr(store, "ensure_schema", None)
        if ensure is not None:
            ensure()


def run(cfg: DictConfig, console: Console | None = None) -> IngestResult:
    """Ingest as configured; also the function tests and the demo call directly."""
    console = console or Console(stderr=True)
    embedder: Embedder = instantiate(cfg.embedder)
    chunker: TokenChunker = instantiate(cfg.ingest.chunker)
    source = SourceConfig(**OmegaConf.to_container(cfg.ingest.source, resolve=True))  # type: ignore[arg-type]
    fingerprint = (f"{chunker.fingerprint()};embedder={embedder.model_name};"
                   f"doc_prefix={embedder.document_prefix}")
    redactor: Redactor = instantiate(cfg.ingest.redact) if "redact" in cfg.ingest else Redactor(enabled=False)
    redaction = RedactionReport() if redactor.enabled else None
    split = SplitConfig(**OmegaConf.to_container(cfg.ingest.qa.split, resolve=True))  # type: ignore[arg-type]
    guard = DeletionGuard(float(cfg.ingest.get("max_delete_fraction", 0.5)),
                          bool(cfg.ingest.get("allow_mass_delete", False)))
    discovered = discover(source)  # a missing path is refused before the store is touched
    if not discovered[1]:
        guard.check(SyncPlan(), source.path)  # an empty source too, unless deletion is allowed
    with opened_store(cfg.store) as store:
        if cfg.ingest.get("dry_run", False):
            documents = load_source(source, fingerprint, discovered)
            if redaction is not None:
                documents = redactor.redact_documents(documents, fingerprint, redaction)
            plan = plan_sync(documents, store if store_has_schema(store) else None, cfg.ingest.cleanup, source.name,
                             split)
            print_plan(console, plan, guard, source.path)
            return IngestResult(SyncReport(unchanged=len(plan.unchanged), failed=plan.failed), None, redaction, plan)
        prepare_store(store, cfg.ingest.auto_migrate)
        with Progress(TextColumn("[bold]ingest[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("{task.description}"), console=console, transient=True,
                      disable=not cfg.ingest.progress) as progress:
            task = progress.add_task("", total=len(discovered[1]))

            def advance(name: str) -> None:
                progress.update(task, advance=1, description=name[-50:])

            documents = load_source(source, fingerprint, discovered)
            if redaction is not None:  # before sync: the hash covers the redacted text
                documents = redactor.redact_documents(documents, fingerprint, redaction)
            report = sync_documents(documents, store, chunker, embedder,
                                    cleanup=cfg.ingest.cleanup, source_name=source.name,
                                    embed_batch_chunks=cfg.ingest.embed_batch_chunks, on_progress=advance,
                                    split=split, guard=guard, source_label=source.path)
        qa_report = None
        qa_path = cfg.ingest.qa.path
        if qa_path:
            if Path(qa_path).is_file():
                qa_report = load_qa_pairs(Path(qa_path), store, embedder, split, cfg.ingest.cleanup, source.name,
                                          redactor.redact if redaction is not None else None, guard)
            else:
                log.info("no QA file at ingest.qa.path=%s", qa_path)
    print_summary(console, report, qa_report, redaction)
    return IngestResult(report, qa_report, redaction)


def store_has_schema(store: ChunkStore) -> bool:
    """Whether the store has been migrated at all (a dry run against a new store plans every document as new)."""
    return bool(store.status().applied_migrations)


def print_plan(console: Console, plan: SyncPlan, guard: DeletionGuard, source_path: str, shown: int = 10) -> None:
    """The dry run's output: counts, the first ids of each kind, and whether the guard would refuse it."""
    table = Table(title=f"promptly ingest --dry-run: {source_path}")
    for col in ("add", "update", "unchanged", "delete", "kept", "failed"):
        table.add_column(col, justify="right")
    table.add_row(*(str(n) for n in (len(plan.to_add), len(plan.to_update), len(plan.unchanged),
                                     len(plan.to_delete), plan.kept, len(plan.failed))))
    console.print(table)
    for label, ids in (("add", [d.id for d in plan.to_add]), ("update", [d.id for d in plan.to_update]),
                       ("delete", plan.to_delete), ("failed", [f"{f.path} ({f.reason})" for f in plan.failed])):
        if ids:
            more = f" ... and {len(ids) - shown} more" if len(ids) > shown else ""
            console.print(f"[bold]{label}:[/] {', '.join(ids[:shown])}{more}", highlight=False)
    try:
        guard.check(plan, source_path)
    except PromptlyError as refused:
        console.print(f"[bold red]a real ingest would be refused:[/] {refused}", highlight=False)
    console.print("dry run: nothing was written")


def print_summary(console: Console, report: SyncReport, qa: QAReport | None,
                  redaction: RedactionReport | None = None) -> None:
    table = Table(title="promptly ingest")
    for col in ("added", "updated", "unchanged", "deleted", "failed", "chunks written", "seconds"):
        table.add_column(col, justify="right")
    table.add_row(str(report.added), str(report.updated), str(report.unchanged), str(report.deleted),
                  str(len(report.failed)), str(report.chunks_written), f"{report.seconds:.2f}")
    console.print(table)
    if report.resplit:
        console.print(f"{report.resplit} unchanged documents got their split under ingest.qa.split "
                      "(nothing re-embedded)")
    if report.kept:
        console.print(f"[yellow]{report.kept} documents no longer in the source were kept:[/] a .jsonl file or "
                      "line could not be read and may hold them (see skipped below)")
    if qa is not None:
        stale = f", {qa.kept_stale} no longer in the file kept (unreadable lines)" if qa.kept_stale else ""
        console.print(f"QA pairs: {qa.loaded} stored, {qa.linked} linked to gold chunks, {qa.removed} removed "
                      f"(no longer in the file), {len(qa.failed)} failed{stale}")
    if redaction is not None:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(redaction.counts.items())) or "none"
        console.print(f"PII redacted in {redaction.redacted_documents} of {redaction.documents} documents: "
                      f"{counts}; person names: {redaction.person_detection}")
        if qa is not None:
            qa_counts = ", ".join(f"{k} {v}" for k, v in sorted(qa.redacted.items())) or "none"
            console.print(f"PII redacted in QA pairs: {qa_counts}")
    failures = report.failed + (qa.failed if qa else [])
    if failures:
        errors = Table(title="skipped", title_style="bold red")
        errors.add_column("document")
        errors.add_column("reason")
        for f in failures:
            errors.add_row(f.path, f.reason)
        console.print(errors)


def task(cfg: DictConfig) -> TaskOutput:
    """The verb: exit status 1 when a document or the QA file was skipped (everything else is stored)."""
    result = run(cfg)
    if result.plan is not None:
        plan = result.plan
        return ({"would_add": float(len(plan.to_add)), "would_update": float(len(plan.to_update)),
                 "would_delete": float(len(plan.to_delete)), "unchanged": float(len(plan.unchanged)),
                 "failed": float(len(plan.failed))}, {"result": result, "exit_code": 0})
    sync = result.sync
    metrics = {"added": sync.added, "updated": sync.updated, "unchanged": sync.unchanged, "deleted": sync.deleted,
               "failed": len(sync.failed), "chunks_written": sync.chunks_written, "seconds": sync.seconds}
    if result.qa is not None:
        metrics.update(qa_loaded=result.qa.loaded, qa_failed=len(result.qa.failed))
    return {k: float(v) for k, v in metrics.items()}, {"result": result, "exit_code": 0 if result.ok else 1}


main = hydra_entry("ingest")(task)
