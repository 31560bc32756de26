"""One job as a Kaggle kernel folder: the notebook rendered from notebooks/kaggle_job.ipynb with the job's
parameters, and kernel-metadata.json. Everything is checked before any kernel is pushed.

What goes into a kernel is overrides, secret *names* and public settings; secret values never do: the
kernel reads them from Kaggle Secrets (promptly.launch.kernel.read_secrets).
"""

from __future__ import annotations

import json
import pprint
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from promptly.errors import ConfigError
from promptly.launch.config import DataSource, Install, KaggleLauncherConfig
from promptly.utils.overrides import quote
from promptly.utils.redact import redact_override

TEMPLATE = Path(__file__).resolve().parents[1] / "_notebooks" / "kaggle_job.ipynb"
PARAMETERS_TAG = "parameters"
METADATA_FILE = "kernel-metadata.json"
STORE_SECRETS = {"PostgresStore": ["PROMPTLY_DATABASE_URL"], "SupabaseStore": ["SUPABASE_URL", "SUPABASE_SERVICE_KEY"]}
# Local locations mean nothing inside a kernel (it lays out its own folders); the launcher is local too.
LOCAL_ONLY = ("paths.", "hydra.", "hydra/")


@dataclass
class KernelJob:
    """What one kernel runs: the parameters cell of the rendered notebook, as plain data."""

    ref: str
    """owner/slug of the kernel."""
    install: list[str]
    """pip arguments that install promptly ([] when preinstalled); globs are expanded in the kernel."""
    secrets: list[str]
    overrides: list[str]
    data_dataset: str | None = None
    eval: bool = False
    sources: dict[str, list[str]] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        return self.ref.split("/", 1)[1]


def slugify(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", text.lower())).strip("-")


def kernel_slug(prefix: str, sweep_dir: Path, num: int) -> str:
    """<prefix>-<sweep folder name>-<num>, at most 50 characters (Kaggle's limit)."""
    stem = slugify(f"{prefix}-{sweep_dir.name}")[: 50 - len(str(num)) - 1].strip("-")
    return f"{stem}-{num}"


def store_kind(cfg: DictConfig) -> str:
    """EmbeddedPostgresStore, PostgresStore or SupabaseStore: the class the job's store config builds."""
    return str(cfg.store.get("_target_", "")).rsplit(".", 1)[-1]


def kernel_overrides(overrides: list[str]) -> list[str]:
    """The job's overrides that travel to the kernel. A value holding a secret stops the launch: it would
    be written into the notebook; secrets go to Kaggle Secrets and the configs read them from there."""
    kept = []
    for o in overrides:
        if redact_override(o) != o:
            key = o.split("=", 1)[0]
            raise ConfigError(f"the override {key}=... holds a secret, which would be written into the kernel: "
                              "keep it in a Kaggle Secret instead (the configs read PROMPTLY_DATABASE_URL, "
                              "SUPABASE_URL, SUPABASE_SERVICE_KEY, WANDB_API_KEY, HF_TOKEN from the environment)")
        if not o.lstrip("+~").startswith(LOCAL_ONLY):
            kept.append(o)
    return kept


def check_data(cfg: DictConfig, settings: KaggleLauncherConfig) -> list[str]:
    """The secrets the job's data source needs; a ConfigError naming what to set when the choice of data
    source and store cannot work in a kernel."""
    kind = store_kind(cfg)
    if settings.data.source == DataSource.store:
        if kind not in STORE_SECRETS:
            raise ConfigError(f"hydra.launcher.data.source=store, but the job's store ({kind}) lives on this machine "
                              "and a Kaggle kernel cannot reach it: use store=postgres (PROMPTLY_DATABASE_URL as a "
                              "Kaggle Secret) or store=supabase (SUPABASE_URL, SUPABASE_SERVICE_KEY), or "
                              "hydra.launcher.data.source=dataset with hydra.launcher.data.dataset=<owner>/<slug>")
        if not settings.internet:
            raise ConfigError("hydra.launcher.data.source=store needs hydra.launcher.internet=true (the kernel "
                              "connects to the store)")
        return STORE_SECRETS[kind]
    if not settings.data.dataset or "/" not in settings.data.dataset:
        raise ConfigError("hydra.launcher.data.source=dataset needs hydra.launcher.data.dataset=<owner>/<slug>: a "
                          "Kaggle dataset laid out like sample_data/ (docs/, qa.jsonl); or, for a store the kernel "
                          "can reach, store=postgres|supabase hydra.launcher.data.source=store")
    if kind != "EmbeddedPostgresStore":
        raise ConfigError(f"hydra.launcher.data.source=dataset ingests into the kernel's embedded store, but the job "
                          f"uses {kind}: drop the store override, or set hydra.launcher.data.source=store")
    return []


def git_commit() -> str:
    """HEAD of the checkout promptly runs from (install=git without a pinned commit)."""
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        raise ConfigError("install=git needs hydra.launcher.git_commit=<commit>: promptly is not running from a "
                          "git checkout") from None
    return out.stdout.strip()


def install_args(settings: KaggleLauncherConfig) -> list[str]:
    extras = f"[{','.join(settings.extras)}]" if settings.extras else ""
    if settings.install == Install.preinstalled:
        return []
    if settings.install == Install.git:
        if not settings.internet:
            raise ConfigError("install=git needs hydra.launcher.internet=true; offline, use install=wheel with a "
                              "dataset holding promptly's wheel and its dependencies")
        return [f"promptly{extras} @ git+{settings.git_url}@{settings.git_commit or git_commit()}"]
    if not settings.wheel_dataset:
        raise ConfigError("install=wheel needs hydra.launcher.wheel_dataset=<owner>/<slug> (a Kaggle dataset "
                          "holding promptly-*.whl; `pip wheel .` or `python -m build` makes it)")
    folder = f"/kaggle/input/{settings.wheel_dataset.split('/', 1)[1]}"
    if settings.internet:
        return [f"{folder}/promptly-*.whl"]
    return ["--no-index", "--find-links", folder, f"promptly{extras}"]


def wandb_overrides(cfg: DictConfig, sweep_dir: Path, num: int, swept: list[str]) -> list[str]:
    """One W&B group per sweep and a name per job, as local multirun jobs get (promptly.utils.naming)."""
    if "wandb" not in (cfg.get("logger") or {}):
        return []
    choices = cfg.hydra.runtime.get("choices", {}) if "hydra" in cfg else {}
    experiment = choices.get("experiment") or f"{choices.get('model', 'model')}-{choices.get('data', 'data')}"
    name = f"{experiment}#{num}" + (f" {','.join(swept)}" if swept else "")
    return [f"logger.wandb.group={quote(f'{experiment}/{sweep_dir.name}')}", f"logger.wandb.name={quote(name)}"]


def render(job: KernelJob) -> dict[str, Any]:
    """The template notebook with its `parameters` cell replaced by this job's values."""
    import nbformat

    nb = nbformat.read(TEMPLATE, as_version=4)
    cells = [c for c in nb.cells if PARAMETERS_TAG in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise RuntimeError(f"{TEMPLATE} must have exactly one cell tagged {PARAMETERS_TAG!r}")
    job_params = {"overrides": job.overrides, "data_dataset": job.data_dataset, "eval": job.eval}
    cells[0].source = "\n".join([
        "# Parameters of this job, written by promptly's Kaggle launcher",
        f"PROMPTLY_INSTALL = {job.install!r}",
        f"SECRETS = {job.secrets!r}",
        f"JOB = {pprint.pformat(job_params, sort_dicts=False)}",
    ])
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return dict(nb)


def metadata(job: KernelJob, settings: KaggleLauncherConfig) -> dict[str, Any]:
    acc = settings.accelerator
    meta: dict[str, Any] = {
        "id": job.ref, "title": job.slug, "code_file": f"{job.slug}.ipynb", "language": "python",
        "kernel_type": "notebook", "is_private": settings.private, "enable_internet": settings.internet,
        "enable_gpu": acc.lower().startswith("nvidia"), "enable_tpu": acc.lower().startswith("tpu"),
        "dataset_sources": job.sources.get("dataset", []), "model_sources": job.sources.get("model", []),
        "kernel_sources": [], "competition_sources": [],
    }
    if acc != "none":
        meta["machine_shape"] = acc
    return meta


def write_kernel(job: KernelJob, settings: KaggleLauncherConfig, folder: Path) -> Path:
    """<folder>/<slug>.ipynb + kernel-metadata.json: what `kaggle kernels push` reads."""
    import nbformat

    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.from_dict(render(job)), folder / f"{job.slug}.ipynb")
    (folder / METADATA_FILE).write_text(json.dumps(metadata(job, settings), indent=2), encoding="utf-8")
    return folder
