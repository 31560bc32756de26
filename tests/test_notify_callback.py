"""The training callback end to end on the tiny model: `callbacks=with_notify` composes, a run sends start
then success (headline metrics, run folder) to a real local webhook receiver, and a run that breaks
mid-fit sends start then exactly one failure (error, log tail with the traceback) even with
PROMPTLY_NOTIFY=failure also asking task_wrapper to report it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest

from promptly.notify import WEBHOOK_ENV
from promptly.notify.callback import NotifyCallback, headline_metrics
from promptly.verbs.train import build, train

from .cloud.webhook_server import WebhookServer
from .test_train_common import FAST, _wandb_offline, location, tiny_state, train_config  # noqa: F401

SECRET = "plantedCallbackWebhookSecret"
SHORT = ["data.batch_size=4", "data.limit.train=12", "data.limit.validation=2", "data.limit.test=0",
         "trainer.max_epochs=1", "trainer.log_every_n_steps=1", "module.samples=0", "callbacks=with_notify",
         "callbacks.notify.backoff_s=0.05", "callbacks.notify.timeout_s=2"]


class FailAtStep2(L.Callback):
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step == 2:
            raise RuntimeError("broken job")


@pytest.fixture(autouse=True)
def _webhook_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*WEBHOOK_ENV.values(), "GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY", "PROMPTLY_NOTIFY"):
        monkeypatch.delenv(name, raising=False)


def test_headline_metrics_put_the_named_ones_first_then_validation() -> None:
    logged = {"train/loss": 2.0, "val/ppl": 5.0, "val/loss": 1.5, "epoch": 0.0}
    assert list(headline_metrics(logged, ["val/loss"])) == ["val/loss", "val/ppl", "epoch", "train/loss"]


def test_the_notify_option_composes_and_is_off_by_default(tmp_path: Path, tiny_state: Path) -> None:  # noqa: F811
    where = location(tmp_path, tiny_state, "postgresql://unused@localhost/x")
    assert "notify" not in train_config([*where, *FAST], tmp_path / "run").callbacks
    cfg = train_config([*where, *FAST, "callbacks=with_notify"], tmp_path / "run")
    assert {"model_checkpoint", "last_checkpoint", "notify"} <= set(cfg.callbacks)
    assert cfg.callbacks.notify.run_dir == str(tmp_path / "run") and cfg.callbacks.notify.metrics == ["val/loss"]


@pytest.mark.slow
def test_training_sends_start_and_success_then_one_failure(monkeypatch: pytest.MonkeyPatch, ingested_url: str,
                                                            tiny_state: Path, tmp_path: Path) -> None:  # noqa: F811
    with WebhookServer() as server:
        monkeypatch.setenv("PROMPTLY_WEBHOOK_URL", server.url(f"/hooks/{SECRET}"))
        out = tmp_path / "ok"
        cfg = train_config([*location(tmp_path, tiny_state, ingested_url, out), *FAST, *SHORT], out)
        callbacks = build(cfg)["callbacks"]
        assert any(isinstance(c, NotifyCallback) for c in callbacks)
        metrics, _ = train(cfg)
        start, success = (r.body for r in server.received)
        assert (start["event"], success["event"]) == ("start", "success")
        assert start["title"] == success["title"] and start["title"].startswith("train ")
        assert "1 epoch(s)" in start["text"] and start["run_dir"] == str(out)
        assert next(iter(success["metrics"])) == "val/loss"
        assert success["metrics"]["val/loss"] == pytest.approx(metrics["val/loss"])
        assert success["run_dir"] == str(out) and "best " in success["text"]

        monkeypatch.setenv("PROMPTLY_NOTIFY", "failure")  # the wrapper would report it too: still one message
        failed = tmp_path / "failed"
        cfg = train_config([*location(tmp_path, tiny_state, ingested_url, failed), *FAST, *SHORT,
                            f"+callbacks.fail._target_={__name__}.FailAtStep2"], failed)
        with pytest.raises(RuntimeError, match="broken job"):
            train(cfg)
        events = [r.body["event"] for r in server.received]
        assert events == ["start", "success", "start", "failure"]
        failure = server.received[-1].body
        assert failure["error"] == "RuntimeError: broken job" and failure["run_dir"] == str(failed)
        assert "in on_train_batch_end" in failure["log_tail"] and "raise RuntimeError" in failure["log_tail"]
    assert all(SECRET not in r.raw for r in server.received)
