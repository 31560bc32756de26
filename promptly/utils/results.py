"""result.json: what every run leaves in its folder for `promptly runs`, sweeps and CI to read."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULT_FILE = "result.json"


@dataclass
class RunResult:
    status: str
    """ok or failed."""
    task_name: str = "train"
    experiment: str = "default"
    overrides: list[str] = field(default_factory=list)
    optimized_metric: str | None = None
    value: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    best_model_path: str | None = None
    output_dir: str = ""
    job_num: int | None = None
    duration_s: float = 0.0
    error: str | None = None
    resolved: dict[str, Any] = field(default_factory=dict)
    """Settings chosen for this machine (precision, weight dtype, torch threads) and why."""


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def write_result(output_dir: Path, result: RunResult) -> Path:
    output_dir.mkdir(parents=True, exist_ok=True)
    data = asdict(result)
    data["metrics"] = {k: _finite(v) for k, v in result.metrics.items()}
    if result.value is not None:
        data["value"] = _finite(result.value)
    path = output_dir / RESULT_FILE
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def read_result(path: Path) -> RunResult:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    data["metrics"] = {k: v for k, v in (data.get("metrics") or {}).items() if v is not None}
    known = RunResult.__dataclass_fields__
    return RunResult(**{k: v for k, v in data.items() if k in known})


def find_results(root: Path) -> list[tuple[Path, RunResult]]:
    """Every run folder under root (root itself may be one), with its result."""
    paths = [root / RESULT_FILE] if (root / RESULT_FILE).is_file() else sorted(root.rglob(RESULT_FILE))
    return [(p.parent, read_result(p)) for p in paths]
