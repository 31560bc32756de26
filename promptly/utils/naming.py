"""Run names, groups and tags derived from the experiment and the sweep, so that the jobs of one
multirun sit side by side in W&B (one group) and each is named by what it changed."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptly.utils.redact import redact_override

# Overrides that say where a run lives, not what it is: left out of names and `promptly runs`.
NOISE_PREFIXES = ("paths.", "hydra.", "hydra/", "store", "logger", "experiment=", "hparams_search=", "debug=",
                  "trainer.enable_progress_bar", "trainer.enable_model_summary", "callbacks", "data.cache_dir",
                  "ckpt_path", "export", "verbose")


@dataclass(frozen=True)
class RunIdentity:
    name: str
    group: str
    tags: list[str] = field(default_factory=list)
    experiment: str = "default"
    overrides: list[str] = field(default_factory=list)
    swept: list[str] = field(default_factory=list)
    """This job's values of the keys its multirun sweeps (what tells the jobs apart)."""
    multirun: bool = False
    job_num: int | None = None


def key_overrides(overrides: list[str]) -> list[str]:
    """The overrides that change the run itself (redacted), in the order given."""
    return [redact_override(o) for o in overrides if not o.lstrip("+~").startswith(NOISE_PREFIXES)]


def swept_keys(sweep_dir: Path) -> set[str]:
    """Keys a multirun varies: comma/range/interval overrides in its multirun.yaml, plus the sweeper's
    own search space (Optuna's `hydra.sweeper.params`)."""
    import yaml
    from hydra.core.override_parser.overrides_parser import OverridesParser

    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return set()
    hydra_cfg = (yaml.safe_load(path.read_text()) or {}).get("hydra", {})
    task = [str(o) for o in (hydra_cfg.get("overrides", {}) or {}).get("task", [])]
    keys = {o.get_key_element() for o in OverridesParser.create().parse_overrides(task) if o.is_sweep_override()}
    keys |= set(((hydra_cfg.get("sweeper") or {}).get("params") or {}).keys())
    return keys


def run_identity() -> RunIdentity:
    """From the current Hydra run; a timestamped ad-hoc identity outside one."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return RunIdentity(name=f"adhoc-{stamp}", group="adhoc", tags=["adhoc"])
    hc: Any = HydraConfig.get()
    choices = dict(hc.runtime.choices)
    experiment = choices.get("experiment") or f"{choices.get('model', 'model')}-{choices.get('data', 'data')}"
    overrides = key_overrides(list(hc.overrides.task))
    multirun = hc.mode == RunMode.MULTIRUN
    tags = [experiment, f"model:{choices.get('model')}", f"data:{choices.get('data')}",
            f"peft:{choices.get('model/peft')}"]
    swept: list[str] = []
    if multirun:
        sweep_dir = Path(str(hc.sweep.dir))
        keys = swept_keys(sweep_dir)
        swept = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] in keys]
        group = f"{experiment}/{sweep_dir.name}"
        num = int(hc.job.num)
        name = f"{experiment}#{num}" + (f" {','.join(swept)}" if swept else "")
        tags.append("multirun")
        if choices.get("hparams_search"):
            tags.append(f"search:{choices['hparams_search']}")
    else:
        num = None
        group = experiment
        name = f"{experiment} {Path(str(hc.runtime.output_dir)).name}"
    return RunIdentity(name=name[:120], group=group[:120], tags=tags, experiment=experiment,
                       overrides=overrides, swept=swept, multirun=multirun, job_num=num)
