"""`promptly launch status|pull dir=<sweep>`: the kernels of a sweep launched with hydra/launcher=kaggle.

status asks Kaggle for each kernel's state (the record in <sweep>/kaggle_launch.json says which);
pull brings back every finished kernel not pulled yet (those the launcher stopped waiting for) as
<sweep>/<num>/, exactly as the launcher would have.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from promptly.errors import InputNotFoundError
from promptly.launch.sweep import RECORD_FILE, KernelRecord, collect, load_record, save_record
from promptly.verbs.entry import hydra_entry
from promptly.verbs.task_wrapper import TaskOutput


def refresh(sweep_dir: Path, pull: bool) -> list[KernelRecord]:
    """Each kernel's current state; with `pull`, finished kernels not yet pulled are collected."""
    records = load_record(sweep_dir)
    if not records:
        return records
    from promptly.launch.kaggle import KaggleSession

    session = KaggleSession()
    for rec in records:
        if rec.pushed_at is None:
            continue
        status = session.status(rec.kernel)
        rec.state, rec.message = status.state, status.message or rec.message
        if pull and status.finished and not rec.pulled:
            collect(session, rec)
        save_record(sweep_dir, records)
    return records


def sweep_folder(cfg: DictConfig) -> Path:
    """cfg.dir, or for `latest` the newest sweep under paths.log_dir that was launched on Kaggle."""
    if str(cfg.dir) != "latest":
        return Path(str(cfg.dir))
    log_dir = Path(str(cfg.paths.log_dir))
    found = sorted(log_dir.glob(f"*/multiruns/*/{RECORD_FILE}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise InputNotFoundError(f"no sweep launched on Kaggle under {log_dir}: pass dir=<sweep folder>")
    return found[-1].parent


def task(cfg: DictConfig) -> TaskOutput:
    sweep_dir = sweep_folder(cfg)
    if not sweep_dir.is_dir():
        raise InputNotFoundError(f"dir={sweep_dir} does not exist: pass a sweep folder launched with "
                                 "hydra/launcher=kaggle")
    records = refresh(sweep_dir, pull=str(cfg.action) == "pull")
    console = Console(width=160) if not Console().is_terminal else Console()
    if not records:
        console.print(f"no Kaggle kernels recorded in {escape(str(sweep_dir))} (no {RECORD_FILE})")
        return {"kernels": 0.0}, {"records": records}
    table = Table("job", "kernel", "state", "pulled", "overrides", "message")
    for r in records:
        table.add_row(str(r.num), escape(r.kernel), r.state, "yes" if r.pulled else "no",
                      escape(" ".join(r.overrides)), escape(r.message.splitlines()[0] if r.message else ""))
    console.print(table)
    done = sum(r.state == "COMPLETE" for r in records)
    return {"kernels": float(len(records)), "complete": float(done)}, {"records": records}


main = hydra_entry("launch", run_folder=False)(task)
