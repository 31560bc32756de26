"""`hydra/launcher=kaggle`: every job of a multirun runs as a Kaggle kernel, and comes back as a local job.

Hydra finds this class by scanning the `hydra_plugins` namespace; the work is in promptly.launch.
Everything that can be wrong locally (credentials, data source, secrets in overrides, install) is
checked for every job before the first kernel is pushed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)


class KaggleJobFailed(RuntimeError):
    """A kernel that failed or timed out; the message ends with the tail of its log."""


class KaggleLauncher(Launcher):
    def __init__(self, **params: Any) -> None:
        self.params = params
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Every job as a kernel; a user error (credentials, data source) is one red line, as in any verb."""
        from promptly.errors import PromptlyError

        try:
            return self._launch(job_overrides, initial_job_idx)
        except PromptlyError as err:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            from rich.console import Console
            from rich.markup import escape

            from promptly.utils.redact import redact_text

            Console(stderr=True).print(f"[bold red]error:[/] {escape(redact_text(str(err)))}")
            raise SystemExit(1) from None

    def _launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from promptly.launch.bundle import (
            KernelJob,
            check_data,
            install_args,
            kernel_overrides,
            kernel_slug,
            wandb_overrides,
            write_kernel,
        )
        from promptly.launch.config import DataSource, KaggleLauncherConfig
        from promptly.launch.kaggle import KaggleSession
        from promptly.launch.sweep import KernelRecord, Polling, run_kernels
        from promptly.utils.redact import redact_yaml_file

        assert self.config is not None and self.hydra_context is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        settings: KaggleLauncherConfig = OmegaConf.to_object(  # type: ignore[assignment]
            OmegaConf.merge(OmegaConf.structured(KaggleLauncherConfig),
                            {k: v for k, v in self.params.items() if k != "_target_"}))
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        redact_yaml_file(sweep_dir / "multirun.yaml")
        swept_keys = _swept_keys(job_overrides)

        jobs: list[tuple[KernelRecord, KernelJob, DictConfig]] = []
        for i, overrides in enumerate(job_overrides):
            num = initial_job_idx + i
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(cfg):
                cfg.hydra.job.id, cfg.hydra.job.num = f"kaggle_{num}", num
            secrets = list(dict.fromkeys([*settings.secrets, *check_data(cfg, settings)]))
            swept = [o for o in overrides if o.split("=", 1)[0] in swept_keys]
            sent = kernel_overrides(list(overrides)) + wandb_overrides(cfg, sweep_dir, num, swept)
            ref = f"-/{kernel_slug(settings.slug_prefix, sweep_dir, num)}"  # the owner is known once signed in
            dataset = settings.data.dataset if settings.data.source == DataSource.dataset else None
            job = KernelJob(ref=ref, install=install_args(settings), secrets=secrets, overrides=sent,
                            data_dataset=dataset, eval=settings.eval,
                            sources={"dataset": list(dict.fromkeys([*([dataset] if dataset else []),
                                                                    *settings.dataset_sources])),
                                     "model": list(settings.model_sources)})
            job_dir = sweep_dir / str(cfg.hydra.sweep.subdir)
            jobs.append((KernelRecord(num=num, kernel=ref, overrides=sent, job_dir=str(job_dir)), job, cfg))

        session = KaggleSession()  # credentials refused here, or by the check below: nothing pushed yet
        owner = settings.user or session.user
        for rec, job, _ in jobs:
            rec.kernel = job.ref = f"{owner}/{job.slug}"
        session.check_access(owner)
        log.info("Launching %d jobs as Kaggle kernels of %s", len(jobs), owner)
        for rec, _, _ in jobs:
            log.info("\t#%d : %s", rec.num, " ".join(filter_overrides(rec.overrides)))
        folders = {rec.num: write_kernel(job, settings, sweep_dir / ".kaggle" / job.slug) for rec, job, _ in jobs}
        polling = Polling(settings.poll_interval_s, settings.poll_backoff, settings.max_poll_interval_s,
                          settings.timeout_s, settings.max_parallel)
        outcomes = run_kernels(session, [rec for rec, _, _ in jobs], lambda rec: session.push(folders[rec.num]),
                               sweep_dir, polling)
        returns = []
        for (rec, _, cfg), outcome in zip(jobs, outcomes, strict=True):
            ret = JobReturn(overrides=list(job_overrides[rec.num - initial_job_idx]), cfg=cfg,
                            hydra_cfg=cfg, working_dir=rec.job_dir, task_name=str(cfg.hydra.job.name))
            ret.status = JobStatus.COMPLETED if outcome.ok else JobStatus.FAILED
            ret.return_value = outcome.value if outcome.ok else KaggleJobFailed(outcome.error)
            if not outcome.ok:
                log.error("job %d failed: %s", rec.num, outcome.error)
            returns.append(ret)
        return returns


def _swept_keys(job_overrides: Sequence[Sequence[str]]) -> set[str]:
    """Keys whose values differ between the jobs (what names each job)."""
    values: dict[str, set[str]] = {}
    for overrides in job_overrides:
        for o in overrides:
            key, _, value = o.partition("=")
            values.setdefault(key, set()).add(value)
    return {k for k, v in values.items() if len(v) > 1}
