"""Progress a person can follow without a terminal: ProgressLog prints step/total, loss, supervised tok/s
and ETA every N steps when no progress bar is shown; the precision choice is printed once."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from promptly.verbs.train import train

from .test_train_common import FAST, _wandb_offline, location, tiny_state, train_config  # noqa: F401

LINE = re.compile(r"step (\d+)/(\d+) epoch \d+ loss (\d+\.\d+) (\d+\.\d) supervised tok/s elapsed \S+ ETA \S+")


@pytest.mark.slow
def test_progress_lines_every_n_steps_without_a_terminal(ingested_url: str, tiny_state: Path,  # noqa: F811
                                                         tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "run"
    cfg = train_config([*location(tmp_path, tiny_state, ingested_url, out), *FAST, "data.batch_size=2",
                        "data.limit.train=16", "data.limit.validation=2", "trainer.max_epochs=1",
                        "callbacks=none", "+callbacks.progress._target_=promptly.model.callbacks.ProgressLog",
                        "+callbacks.progress.every_n_steps=3", "+callbacks.progress.every_n_seconds=3600",
                        "trainer.enable_progress_bar=null"], out)
    with caplog.at_level(logging.INFO):
        _, objects = train(cfg)
    progress = next(c for c in objects["callbacks"] if type(c).__name__ == "ProgressLog")
    steps = [tuple(int(g) for g in LINE.fullmatch(line).groups()[:2]) for line in progress.lines]  # type: ignore[union-attr]
    total = objects["trainer"].global_step
    assert total == 8  # 16 examples, 2 a step: the bar is off (pytest's stderr is no terminal)
    assert steps == [(3, total), (6, total), (8, total)]  # every 3 steps, and the last one
    assert sum("precision:" in r.getMessage() for r in caplog.records) == 1
    assert any(line in r.getMessage() for r in caplog.records for line in progress.lines)
