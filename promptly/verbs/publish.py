"""`promptly publish [push | list | promote | rollback]`: versioned models in a registry, recorded in the store.

    promptly publish                                  # the best run under logs/train -> local registry, next vN
    promptly publish run_dir=latest publish.promote=true
    HF_TOKEN=hf_... promptly publish publish.registry=hub publish.repo_id=me/docs-assistant
    promptly publish list
    promptly publish promote version=v2
    promptly publish rollback

A push happens in this order, so that nothing is published half-way: every check (run, evaluation,
checkpoint, token, repository owner) -> export and card in a staging folder -> one commit -> the version
tag -> the store's model_versions row. A failed upload leaves no tag; a row that cannot be written takes
its tag away again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

import promptly.verbs.schemas  # noqa: F401  (registers the config schemas before Hydra composes)
from promptly.errors import ConfigError, InputNotFoundError
from promptly.publish.card import CardInputs, DataSnapshot, render_card
from promptly.publish.config import CardConfig
from promptly.publish.export import export_version
from promptly.publish.registry import Registry, next_version
from promptly.publish.registry_local import LocalRegistry
from promptly.publish.selection import (
    Candidate,
    Evaluation,
    Verdict,
    compare_with_active,
    newest_evaluation,
    resolve_run,
)
from promptly.store.base import ChunkStore, ModelVersion
from promptly.store.open import opened_store
from promptly.utils.redact import redacted_container
from promptly.verbs.entry import hydra_entry
from promptly.verbs.task_wrapper import TaskOutput

log = logging.getLogger(__name__)


def open_registry(p: DictConfig) -> Registry:
    """The configured registry (the Hub client is imported only when it is used)."""
    if str(p.registry) == "hub":
        from promptly.publish.hub import HubRegistry

        return HubRegistry(str(p.hub.endpoint), str(p.hub.token_env))
    return LocalRegistry(str(p.registry_dir))


def data_snapshot(store: ChunkStore) -> DataSnapshot:
    """Counts and one hash of what the store holds: documents (by content hash) and QA pairs."""
    status = store.status()
    h = hashlib.sha256()
    for doc_id, content_hash in sorted(store.document_hashes().items()):
        h.update(f"d\0{doc_id}\0{content_hash}\n".encode())
    for pair_line in sorted(f"q\0{p.id}\0{p.split}\0{p.question}\0{p.answer}\n" for p in store.iter_qa_pairs()):
        h.update(pair_line.encode())
    return DataSnapshot(documents=status.documents, chunks=status.chunks, qa_pairs=status.qa_pairs,
                        content_hash=h.hexdigest(), backend=status.backend)


def _checked(chosen: Candidate) -> tuple[Evaluation, str, DictConfig]:
    """The evaluation, its checkpoint and the run's config; any of them missing is the user's error."""
    evaluation = newest_evaluation(chosen.run_dir)
    checkpoint = evaluation.checkpoint
    if not checkpoint or checkpoint.startswith("("):
        raise InputNotFoundError(f"run {chosen.run_dir}'s newest evaluation names no checkpoint: evaluate the run "
                                 f"with `promptly eval run_dir={chosen.run_dir}`")
    if not Path(checkpoint).is_file():
        raise InputNotFoundError(f"run {chosen.run_dir} has no checkpoint {checkpoint} (its newest evaluation's): "
                                 "was it deleted? Evaluate a checkpoint that exists")
    saved = chosen.run_dir / "config.yaml"
    if not saved.is_file():
        raise InputNotFoundError(f"run {chosen.run_dir} has no config.yaml: is it a `promptly train` run folder?")
    run_cfg = OmegaConf.create(yaml.safe_load(saved.read_text(encoding="utf-8")))
    if not isinstance(run_cfg, DictConfig) or "model" not in run_cfg:
        raise ConfigError(f"{saved} holds no model settings")
    return evaluation, checkpoint, run_cfg


def push(cfg: DictConfig, store: ChunkStore, console: Console) -> ModelVersion | Verdict:
    """Publish the chosen run as the next version; return the recorded version, or with
    publish.only_if_better the verdict that kept it back."""
    p = cfg.publish
    chosen, metric, direction = resolve_run(p.run_dir, str(p.runs_dir), p.metric, str(p.mode))
    evaluation, checkpoint, run_cfg = _checked(chosen)
    if p.only_if_better:
        verdict = compare_with_active(evaluation, store.active_model_version(), p.metric, str(p.mode))
        console.print(f"{chosen.run_dir}: {verdict.reason}")
        if not verdict.better:
            console.print("[bold yellow]not published[/]: the active version stays")
            return verdict
    selection = (f"best of {p.runs_dir} by {metric} ({direction}): {chosen.metrics.get(metric, float('nan')):.4g}"
                 if metric and direction else "chosen by path")
    registry = open_registry(p)
    repo_id = registry.resolve_repo_id(str(p.repo_id))
    version = next_version(*registry.tags(repo_id), *(v.version for v in store.list_model_versions(repo_id)))
    console.print(f"publishing {chosen.run_dir} as {repo_id} {version} ({registry.kind} registry)")
    staging = Path(cfg.paths.output_dir) / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        folder = staging / "version"
        exported = export_version(run_cfg, checkpoint, folder, bool(p.merge))
        card = CardInputs(repo_id=repo_id, version=version, run_dir=chosen.run_dir, run_config=run_cfg,
                          evaluation=evaluation, exported=exported, data=data_snapshot(store), selection=selection,
                          card=CardConfig(**OmegaConf.to_container(p.card, resolve=True)),  # type: ignore[arg-type]
                          local_repo=str(registry.repo_dir(repo_id)) if isinstance(registry, LocalRegistry) else None)
        token = os.environ.get(str(p.hub.token_env), "")
        (folder / "README.md").write_text(render_card(card, secrets=(token,)), encoding="utf-8")
        published = datetime.now(UTC).isoformat()
        # The root holds an adapter only in the adapter layout (promptly.model.loading reads this).
        meta = {**exported.meta, "adapter_only": exported.layout == "adapter", "merged": exported.layout == "merged",
                "checkpoint": Path(checkpoint).name, "layout": exported.layout, "repo_id": repo_id,
                "version": version, "run": chosen.run_dir.name, "published_at": published,
                "evaluation": {"report": evaluation.report_dir.name, "split": evaluation.split,
                               "examples": evaluation.examples, "created_at": evaluation.created_at}}
        (folder / "promptly.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        registry.ensure_repo(repo_id, bool(p.private))
        commit = registry.commit_folder(repo_id, folder, f"promptly publish {version}: run {chosen.run_dir.name}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    registry.create_tag(repo_id, version, commit)
    record = ModelVersion(
        version=version, repo_id=repo_id, revision=commit, metrics=dict(evaluation.metrics),
        config={"registry": registry.kind, "location": registry.location(repo_id, version), "layout": exported.layout,
                "base_model": exported.meta.get("base_model"), "run_dir": str(chosen.run_dir),
                "report": str(evaluation.report_json), "checkpoint": checkpoint, "selection": selection,
                "training": redacted_container(run_cfg),
                **({"engine_model": str(p.engine_model)} if p.engine_model else {})})
    try:
        store.add_model_version(record)
    except BaseException:
        registry.delete_tag(repo_id, version)  # no tag without its row: the version does not exist
        raise
    if p.promote:
        record = store.promote_model_version(repo_id, version)
    console.print(f"published {repo_id} {version} ({exported.layout}) at {record.config['location']}"
                  + (" [bold green](active)[/]" if record.is_active else ""))
    return record


def _repo_id(p: DictConfig) -> str:
    """The configured repository as owner/name, resolved as a push resolves it."""
    return open_registry(p).resolve_repo_id(str(p.repo_id))


def list_versions(store: ChunkStore, repo_id: str | None, console: Console) -> list[ModelVersion]:
    versions = store.list_model_versions(repo_id)
    table = Table(title=f"model versions{f' of {repo_id}' if repo_id else ''}")
    for column in ("", "repository", "version", "layout", "created", "revision", "metrics", "location"):
        table.add_column(column, overflow="fold")
    for v in versions:
        shown = ", ".join(f"{k} {val:.3g}" for k, val in list(v.metrics.items())[:4] if isinstance(val, int | float))
        table.add_row("★" if v.is_active else "", v.repo_id, v.version, str(v.config.get("layout", "-")),
                      v.created_at.strftime("%Y-%m-%d %H:%M") if v.created_at else "-", (v.revision or "-")[:12],
                      shown or "-", str(v.config.get("location", "-")), style="bold green" if v.is_active else None)
    console.print(table if versions else "no versions recorded: `promptly publish` pushes one")
    return versions


def run(cfg: DictConfig, console: Console | None = None) -> TaskOutput:
    """One publish action (hydra_entry runs it under task_wrapper: run folder, result.json)."""
    console = console or Console(width=None if os.isatty(1) else 160)
    p = cfg.publish
    action = str(p.action)
    if action == "promote" and not p.version:
        raise ConfigError("promote needs the version: `promptly publish promote version=v2`")
    with opened_store(cfg.store) as store:
        store.migrate()
        if action == "push":
            pushed = push(cfg, store, console)
            if isinstance(pushed, Verdict):
                kept = {"published": 0.0, f"candidate/{pushed.metric}": pushed.candidate}
                if pushed.incumbent is not None:
                    kept[f"active/{pushed.metric}"] = pushed.incumbent
                return kept, {"verdict": pushed}
            return {k: float(v) for k, v in pushed.metrics.items()}, {"version": pushed}
        if action == "list":
            return {}, {"versions": list_versions(store, None, console)}  # every repository: what may be served
        if action == "promote":
            record = store.promote_model_version(_repo_id(p), str(p.version))
        elif action == "rollback":
            record = store.rollback_model_version()
        else:
            raise ConfigError(f"action must be push, list, promote or rollback, got {action!r}")
        console.print(f"active version: {record.repo_id} {record.version} ({record.config.get('location', '-')})")
        return {}, {"version": record}


main = hydra_entry("publish")(run)


if __name__ == "__main__":
    main()
