"""A Hydra callback for sweeps: resolvable run folders, and no secrets in the sweep's multirun.yaml.

Hydra resolves `hydra.sweep.dir` in the sweeper, before any job has set HydraConfig; the paths group
derives every folder from `${hydra:runtime.cwd}`, so without this `promptly train -m` stops with
"HydraConfig was not set" before its first job. Hydra also saves the sweep's overrides (a database URL
with its password, say) to <sweep dir>/multirun.yaml; each job redacts it before running, and masks the
overrides Hydra prints for a failed job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from promptly.utils.redact import redact_override, redact_yaml_file


class HydraConfigForSweeps(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.types import RunMode

        if config.hydra.mode == RunMode.MULTIRUN:
            redact_yaml_file(Path(str(config.hydra.sweep.dir)) / "multirun.yaml")

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """Hydra prints a failed job's overrides ("Error executing job with overrides: [...]") when the sweep
        ends: they are masked here, where the job's result is handed back."""
        job_return.overrides = [redact_override(str(o)) for o in job_return.overrides or []]
