"""What the publishing tests share (no tests here): a tiny LoRA run trained on the sample corpus and evaluated
with `promptly eval`, so it has a checkpoint and an evaluations.jsonl line (the `evaluated_run` fixture of
tests/conftest.py builds it once a session), a store to publish from, and a publish config."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from omegaconf import DictConfig

from promptly.store.postgres import PostgresStore

from .conftest import DIM
from .test_store_contract import make_doc
from .test_train_common import FAST, location, train_config

TRAIN = [*FAST, "experiment=smoke", "model/peft=lora", "model.peft.r=4", "model.peft.alpha=8",
         "model.peft.target_modules=[q_proj,v_proj]", "trainer.max_epochs=1", "data.limit.train=24",
         "module.samples=0", "logger=csv"]


def train_and_evaluate(tmp: Path, tiny_state: Path, ingested_url: str) -> Path:
    """A tiny-model LoRA run with a checkpoint, evaluated once (8 test questions) by `promptly eval`: the
    session's `evaluated_run` fixture (tests/conftest.py)."""
    from promptly.verbs.eval import run as run_eval
    from promptly.verbs.train import train

    run_dir = tmp / "logs" / "train" / "runs" / "2026-01-01_00-00-00"
    train(train_config([*TRAIN, *location(tmp, tiny_state, ingested_url, run_dir)], run_dir))
    out = tmp / "logs" / "eval" / "runs" / "2026-01-01_00-01-00"
    run_eval(train_config([*location(tmp, tiny_state, ingested_url, out), f"run_dir={run_dir}", "limit=8",
                           "generation.max_new_tokens=8"], out, config_name="eval"))
    assert (run_dir / "evaluations.jsonl").is_file(), "promptly eval records itself in the training run"
    return run_dir


def newest_evaluation_line(run_dir: Path) -> dict[str, Any]:
    return dict(json.loads((run_dir / "evaluations.jsonl").read_text().splitlines()[-1]))


@pytest.fixture
def publish_store(pg_url: str) -> Iterator[str]:
    """A migrated store holding two documents, for the data snapshot and the model_versions rows."""
    with PostgresStore(pg_url, embedding_dim=DIM) as store:
        store.migrate()
        store.upsert_document(*make_doc("guide.md", ["install with pip", "run the server"], 0))
        store.upsert_document(*make_doc("faq.md", ["the port is 8080"], 2))
    return pg_url


def publish_config(tmp: Path, store_url: str, overrides: list[str]) -> DictConfig:
    """configs/publish.yaml as the CLI composes it, with the run folder and state under tmp."""
    return train_config([f"paths.root_dir={tmp}", f"paths.state_dir={tmp / 'state'}", f"paths.log_dir={tmp / 'logs'}",
                         "store=postgres", f"store.url='{store_url}'", *overrides],
                        tmp / "publish-run", config_name="publish")
