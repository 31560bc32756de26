"""`promptly qa generate | export`: synthetic QA pairs from the store's chunks; disliked conversations out."""

from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from promptly.errors import ConfigError
from promptly.ingest.splits import SplitConfig
from promptly.qa.config import GenerationConfig, QASettings
from promptly.qa.conversations import export_disliked
from promptly.qa.generate import GenerationReport, generate_pairs
from promptly.qa.generators import QAGenerator
from promptly.qa.validation import REASONS
from promptly.store.open import opened_store
from promptly.verbs.entry import hydra_entry
from promptly.verbs.ingest import prepare_store
from promptly.verbs.task_wrapper import TaskOutput

log = logging.getLogger(__name__)
ACTIONS = ("generate", "export")


def generation_config(node: DictConfig) -> GenerationConfig:
    """`cfg.qa` (typed by the QASettings schema at composition) as the generation settings alone."""
    settings: Any = OmegaConf.to_object(node) if OmegaConf.is_config(node) else node
    if not isinstance(settings, GenerationConfig):  # a plain mapping (tests build one by hand)
        settings = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(QASettings), settings))
    values = {f.name: getattr(settings, f.name) for f in fields(GenerationConfig)}
    split = values.get("split")
    values["split"] = SplitConfig(**split) if isinstance(split, dict) else split or SplitConfig()
    return GenerationConfig(**values)


def run(cfg: DictConfig, console: Console | None = None) -> GenerationReport | int:
    """Run the configured action; also what tests call directly."""
    console = console or Console(stderr=True)
    if cfg.action not in ACTIONS:
        raise ConfigError(f"action must be one of {', '.join(ACTIONS)}, got {cfg.action!r}")
    with opened_store(cfg.store) as store:
        prepare_store(store, cfg.qa.auto_migrate)
        if cfg.action == "export":
            path = Path(cfg.qa.export.path)
            count = export_disliked(store, path)
            console.print(f"exported {count} disliked conversation(s) to {path}")
            return count
        settings = generation_config(cfg.qa)
        generator: QAGenerator = instantiate(cfg.qa_generator)
        embedder = instantiate(cfg.embedder)
        with Progress(TextColumn("[bold]qa generate[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True, disable=not cfg.qa.get("progress", True)) as progress:
            task = progress.add_task("", total=None)
            report = generate_pairs(store, embedder, generator, settings,
                                    on_progress=lambda _: progress.update(task, advance=1))
    print_summary(console, report, generator.name, int(cfg.qa.get("summary_samples", 5)))
    return report


def print_summary(console: Console, report: GenerationReport, generator: str, samples: int = 5) -> None:
    """The counts, the rejections by reason, and a few accepted pairs (so a reader sees what was kept)."""
    table = Table(title=f"promptly qa generate ({escape(generator)}, {report.mode})")
    for col in ("documents", "chunks asked", "chunks skipped", "requests", "retries", "accepted", "per document",
                "stored", "replaced", "seconds"):
        table.add_column(col, justify="right")
    per_doc = report.accepted / report.documents if report.documents else 0.0
    table.add_row(str(report.documents), str(report.chunks_sampled), str(report.chunks_skipped),
                  str(report.requests), str(report.retries), str(report.accepted), f"{per_doc:.2f}", str(report.stored),
                  str(report.replaced), f"{report.seconds:.1f}")
    console.print(table)
    rejected = Table(title="rejected", title_style="bold")
    rejected.add_column("reason")
    rejected.add_column("count", justify="right")
    for reason in REASONS:
        rejected.add_row(reason, str(report.rejected[reason]))
    console.print(rejected)
    if report.chunks_without_spans:
        console.print(f"{report.chunks_without_spans} sampled chunk(s) had no answer-bearing span")
    if report.accepted_pairs and samples > 0:
        shown = Table(title=f"accepted (first {min(samples, len(report.accepted_pairs))})", title_style="bold")
        for col in ("document", "question", "answer"):
            shown.add_column(col, overflow="fold")
        for pair in report.accepted_pairs[:samples]:
            shown.add_row(escape(pair.document_id), escape(pair.question), escape(pair.answer))
        console.print(shown)


def task(cfg: DictConfig) -> TaskOutput:
    """The verb: exit status 1 when every request to the generator failed."""
    for name in ("httpx", "httpx2"):  # one INFO line per request would bury the summary
        logging.getLogger(name).setLevel(logging.WARNING)
    result = run(cfg)
    if isinstance(result, GenerationReport):
        metrics = {"documents": result.documents, "requests": result.requests, "accepted": result.accepted,
                   "stored": result.stored, "replaced": result.replaced, "seconds": result.seconds,
                   **{f"rejected_{reason}": n for reason, n in result.rejected.items()}}
        return {k: float(v) for k, v in metrics.items()}, {"result": result, "exit_code": 0 if result.ok else 1}
    return {"exported": float(result)}, {"result": result}


main = hydra_entry("qa")(task)
