"""Helpers shared by the training tests (no tests here): compose a train config as the CLI would,
pointed at the session's ingested sample corpus and at tmp folders, and keep W&B offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from omegaconf import DictConfig

import promptly.verbs.schemas  # noqa: F401  (schemas registered before composing)

from .conftest import REPO_ROOT, as_job, compose, plain

SAMPLE_DATA = REPO_ROOT / "sample_data"

# Small enough for a 2-core CPU: one retrieved chunk, 160-token examples, a 2-layer tiny model.
FAST = [
    "model=tiny", "trainer=cpu", "logger=csv", "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false", "model.tiny.num_hidden_layers=2", "data.max_length=160",
    "data.retrieval.k=1", "export=false",
]


@pytest.fixture(scope="session")
def tiny_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One state dir (tiny tokenizer cache) for the whole session."""
    return tmp_path_factory.mktemp("state")


@pytest.fixture(autouse=True)
def _wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def location(tmp: Path, state: Path, store_url: str, output_dir: Path | None = None) -> list[str]:
    out = output_dir or tmp / "run"
    return [f"paths.root_dir={REPO_ROOT}", f"paths.data_dir={SAMPLE_DATA}", f"paths.state_dir={state}",
            f"paths.log_dir={tmp / 'logs'}", f"paths.output_dir={out}", "store=postgres",
            f"store.url='{store_url}'"]


def train_config(overrides: list[str], output_dir: Path, config_name: str = "train") -> DictConfig:
    """Compose configs/<config_name>.yaml and resolve it outside a Hydra run (HydraConfig set, as in a job)."""
    return plain(as_job(compose(config_name, overrides), output_dir, Path(os.getcwd())))
