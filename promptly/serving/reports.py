"""The latest evaluation report of the served model, for GET /v1/report and the UI's evaluation page."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from promptly.errors import InputNotFoundError
from promptly.serving.models import ModelSlot

_IMAGE = re.compile(r"^!\[[^\]]*\]\([^)]*\)\s*$", re.MULTILINE)


def report_path(slot: ModelSlot, log_dir: str | Path) -> Path | None:
    """A published version's own evaluation (recorded at publish), else the newest `promptly eval` report
    of the served model (by its name or checkpoint)."""
    if slot.version is not None:
        recorded = Path(str(slot.version.config.get("report") or ""))
        if recorded.is_file():
            return recorded
    candidates = []
    for path in Path(log_dir, "eval").glob("**/report.json"):
        try:
            settings = json.loads(path.read_text(encoding="utf-8")).get("settings") or {}
        except (OSError, ValueError):
            continue
        if settings.get("name") == slot.loaded.name or (
                slot.loaded.checkpoint and settings.get("checkpoint") == slot.loaded.checkpoint):
            candidates.append(path)
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def evaluation_report(slot: ModelSlot, cfg: DictConfig) -> dict[str, Any]:
    path = report_path(slot, cfg.paths.log_dir)
    if path is None:
        raise InputNotFoundError(f"no evaluation report of {slot.model_id} yet: run `promptly eval` on it")
    report = json.loads(path.read_text(encoding="utf-8"))
    markdown_file = path.with_name("report.md")
    markdown = markdown_file.read_text(encoding="utf-8") if markdown_file.is_file() else ""
    return {"model": slot.model_id, "path": str(path), "title": report.get("title", "Evaluation report"),
            "overall": report.get("overall", {}), "settings": report.get("settings", {}),
            "markdown": _IMAGE.sub("", markdown)}
