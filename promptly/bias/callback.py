"""Bias while training: `BiasProbe` asks a small sample of counterfactual probes at the end of each
validation (through the RAG answer path, with the model being trained) and logs the judge's figures;
Before its first round `BiasProbe` measures the judge on labelled BBQ pairs (promptly/bias/calibration.py,
cached per judge): when the judge cannot tell a biased answer from a fair one, every round's log line and
bias_probes.jsonl say that its scores are not evidence, and val/judge_calibrated is 0.
`DataBalanceCheck` reads the store's data balance before the first step, logs the table, and warns or
refuses as configured.

The datamodule closes its store once the data is prepared, so both reconnect through their own store
object for each use and close it again: nothing holds a connection (or the embedded server) while training.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L

from promptly.bias.balance import BalanceSettings, OnImbalance, check_balance
from promptly.bias.config import Thresholds
from promptly.bias.judges import Judge
from promptly.bias.probes import load_probe_set
from promptly.bias.rubric import Rubric

log = logging.getLogger(__name__)
LOGGED = ("bias_score", "bias_gap", "bias_divergence", "bias_refusal_gap", "bias_flagged_axes", "bias_unscored",
          "judge_calibrated")
"""The headline figures logged as val/<name> (declared in promptly/metrics_catalog.py)."""
HISTORY = "bias_probes.jsonl"
"""In the run folder: one line per probed validation (step, headline figures, per-axis summary)."""


class BiasProbe(L.Callback):
    """Probe, judge and log at the end of every `every_n_validations`-th validation (rank zero only;
    skipped in the sanity check). The sample is fixed (seeded) so the figures are comparable over steps."""

    def __init__(self, store: Any, embedder: Any, judge: Judge, rubric: Mapping[str, Any],
                 probes_path: str | None = None, axes: Sequence[str] = (), templates_per_axis: int | None = 1,
                 every_n_validations: int = 1, k: int = 3, mode: str = "hybrid", max_new_tokens: int = 48,
                 gap_threshold: float = 0.5, refusal_gap_threshold: float = 0.25, seed: int = 0,
                 output_dir: str | None = None, calibration: Mapping[str, Any] | None = None,
                 state_dir: str | None = None) -> None:
        self.store, self.embedder, self.judge = store, embedder, judge
        self.rubric = Rubric.from_config(rubric)
        self.probe_set = load_probe_set(probes_path)
        self.probes = self.probe_set.probes(list(axes) or None, templates_per_axis, seed)
        self.every, self.k, self.mode = max(1, every_n_validations), k, str(mode)
        self.max_new_tokens, self.seed = max_new_tokens, seed
        self.thresholds = Thresholds(gap=gap_threshold, refusal_gap=refusal_gap_threshold)
        self.output_dir = Path(output_dir) if output_dir else None
        self.validations = 0
        self.last: dict[str, Any] | None = None
        self.calibration_settings = dict(calibration or {"enabled": False})
        self.state_dir = Path(state_dir) if state_dir else Path(".promptly")
        self.calibration: Any = None

    def calibrate(self) -> Any:
        """The judge's calibration, measured (or read from the cache) once per run."""
        if self.calibration is None:
            from promptly.bias.calibration import measure

            self.calibration = measure(self.judge, self.rubric, self.calibration_settings, self.state_dir)
            level = logging.INFO if self.calibration.calibrated else logging.WARNING
            log.log(level, "bias probe judge: %s", self.calibration.headline())
        return self.calibration

    def _loaded(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Any:
        from promptly.model.loading import LoadedModel

        datamodule = trainer.datamodule  # type: ignore[attr-defined]
        return LoadedModel(model=pl_module.net, tokenizer=pl_module.tokenizer, name="training",
                           origin="training", checkpoint=None, prompt=datamodule.prompt,
                           max_length=int(datamodule.max_length))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.validations += 1
        if (self.validations - 1) % self.every or not trainer.is_global_zero:
            return
        from promptly.answering import Answerer
        from promptly.bias.scoring import answerer_responder, run_probes, summarize
        from promptly.model.config import SamplingConfig
        from promptly.retrieval import Retriever

        answerer = Answerer(self._loaded(trainer, pl_module), Retriever(self.store, self.embedder, self.k, self.mode),
                            SamplingConfig(max_new_tokens=self.max_new_tokens, seed=self.seed))
        try:
            results = run_probes(self.probes, answerer_responder(answerer, self.store.close), self.judge,
                                 self.rubric, self.probe_set)
        finally:
            self.store.close()
        summary = summarize(results, self.probes, self.embedder, self.thresholds)
        calibration = self.calibrate()
        summary["overall"]["judge_calibrated"] = float(calibration.calibrated)
        summary = {"judge_calibrated": calibration.calibrated, "verdict": calibration.headline(), **summary}
        self.last = summary
        figures = {f"val/{k}": float(v) for k, v in summary["overall"].items() if k in LOGGED and v is not None}
        pl_module.log_dict(figures, rank_zero_only=True)
        flagged = [a for a, v in summary["axes"].items() if v["flagged"]]
        if flagged:
            note = "" if calibration.calibrated else " (score gaps from an uncalibrated judge are not evidence)"
            log.warning("bias probe at step %d: flagged %s%s", trainer.global_step, ", ".join(flagged), note)
        if self.output_dir is not None:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            line = {"step": trainer.global_step, "epoch": trainer.current_epoch, **summary}
            with (self.output_dir / HISTORY).open("a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")


class DataBalanceCheck(L.Callback):
    """Before training: the share of chunks and QA pairs per source, owner and document, into the
    training log, the loggers and `data_balance.md`/`.json` in the run folder; warns or refuses."""

    def __init__(self, store: Any, owner_key: str = "owner", max_share: float = 0.5,
                 max_document_share: float = 0.25, on_imbalance: str = "warn", output_dir: str | None = None) -> None:
        self.store = store
        self.settings = BalanceSettings(owner_key=owner_key, max_share=max_share,
                                        max_document_share=max_document_share, on_imbalance=OnImbalance(on_imbalance))
        self.output_dir = Path(output_dir) if output_dir else None
        self.report: Any = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        try:
            self.report = check_balance(self.store, self.settings)  # refuses here, before any step
        finally:
            self.store.close()
        table = self.report.markdown()
        log.info("data balance:\n%s", table)
        if self.output_dir is not None and trainer.is_global_zero:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / "data_balance.md").write_text("# Data balance\n\n" + table, encoding="utf-8")
            (self.output_dir / "data_balance.json").write_text(json.dumps(self.report.to_dict(), indent=2),
                                                               encoding="utf-8")
        for logger in trainer.loggers:
            logger.log_metrics({"data_max_share": self.report.max_share}, step=0)
