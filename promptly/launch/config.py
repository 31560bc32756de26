"""Typed settings of `hydra/launcher=kaggle` and of `promptly launch`, so a typo fails at composition.

Registered in promptly/verbs/schemas.py; configs/hydra/launcher/kaggle.yaml and configs/launch.yaml
name them first in their defaults lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

LAUNCHER_TARGET = "hydra_plugins.promptly_kaggle_launcher.kaggle_launcher.KaggleLauncher"


class Install(StrEnum):
    git = "git"
    """pip install promptly from `git_url` at the pinned `git_commit` (needs internet)."""
    wheel = "wheel"
    """pip install the promptly wheel found in the Kaggle dataset `wheel_dataset` (works offline)."""
    preinstalled = "preinstalled"
    """Nothing to install: the kernel's image already has promptly (a custom image; the local tests)."""


class DataSource(StrEnum):
    store = "store"
    """The job's store is a Postgres or Supabase store reached from the kernel; its URL/key are Kaggle Secrets."""
    dataset = "dataset"
    """A Kaggle dataset laid out like sample_data/ (docs/, qa.jsonl), ingested into the kernel's embedded store."""


@dataclass
class KaggleData:
    """Where a kernel's documents and QA pairs come from: explicit, checked before anything is pushed."""

    source: DataSource = DataSource.dataset
    """store: the job's `store=postgres|supabase`; dataset: `dataset` ingested inside the kernel."""
    dataset: str | None = None
    """owner/slug of the Kaggle dataset holding docs/ and qa.jsonl (source=dataset)."""


@dataclass
class KaggleLauncherConfig:
    """hydra/launcher=kaggle: each job of a multirun becomes one Kaggle kernel (notebook)."""

    _target_: str = LAUNCHER_TARGET
    user: str | None = None
    """The Kaggle user that owns the kernels; null: the user of the credentials."""
    slug_prefix: str = "promptly"
    """Kernel slugs are <slug_prefix>-<sweep time>-<job num>."""
    accelerator: str = "none"
    """none (CPU), or a Kaggle machine shape: NvidiaTeslaT4, NvidiaTeslaT4Highmem, NvidiaL4, TpuV6E8..."""
    internet: bool = True
    """The kernel's internet access: git installs, Hub downloads, W&B online and a remote store need it."""
    private: bool = True
    """Kernels stay private to the user."""
    data: KaggleData = field(default_factory=KaggleData)
    dataset_sources: list[str] = field(default_factory=list)
    """Extra Kaggle datasets to attach (owner/slug)."""
    model_sources: list[str] = field(default_factory=list)
    """Kaggle models to attach (owner/model/framework/variation/version)."""
    install: Install = Install.git
    """How promptly gets into the kernel."""
    git_url: str = "https://github.com/promptly-ml/promptly.git"
    """The repository pip installs from (install=git)."""
    git_commit: str | None = None
    """The pinned commit (install=git); null: the commit of the checkout that launches."""
    wheel_dataset: str | None = None
    """owner/slug of a Kaggle dataset holding a promptly-*.whl (install=wheel)."""
    extras: list[str] = field(default_factory=list)
    """pip extras installed with promptly (e.g. [mlflow])."""
    secrets: list[str] = field(default_factory=lambda: ["WANDB_API_KEY", "HF_TOKEN"])
    """Kaggle Secrets read inside the kernel into environment variables of the same name; a store's
    own (PROMPTLY_DATABASE_URL, SUPABASE_URL + SUPABASE_SERVICE_KEY) are added from the job's store."""
    eval: bool = False
    """Run `promptly eval run_dir=<the run>` after training, in the same kernel."""
    poll_interval_s: float = 30.0
    """First wait between status checks..."""
    poll_backoff: float = 1.5
    """...multiplied by this after each check..."""
    max_poll_interval_s: float = 300.0
    """...up to this."""
    timeout_s: float = 43200.0
    """Stop waiting for a kernel after this long (it keeps running: `promptly launch pull` fetches it later)."""
    max_parallel: int = 2
    """Kernels running at once (Kaggle limits concurrent GPU sessions per user)."""


class LaunchAction(StrEnum):
    status = "status"
    """List a sweep's kernels and their states."""
    pull = "pull"
    """Download the outputs of the sweep's finished kernels not pulled yet."""


@dataclass
class LaunchConfig:
    """promptly launch status|pull."""

    action: LaunchAction = LaunchAction.status
    task_name: str = "launch"
    dir: str = "latest"
    """A sweep folder launched with hydra/launcher=kaggle (holds kaggle_launch.json), or latest."""
    paths: Any = None


def register_schemas() -> None:
    """hydra/launcher=kaggle and launch.yaml name these first in their defaults lists. Runs on import
    (promptly/verbs/schemas.py imports this module, as it does the resolvers)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(group="hydra/launcher", name="base_kaggle", node=KaggleLauncherConfig, provider="promptly")
    cs.store(name="launch_schema", node=LaunchConfig)


register_schemas()
