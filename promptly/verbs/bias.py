"""`promptly bias`: counterfactual probes asked through the RAG answer path, graded on the fairness
rubric by the configured judge, summarised per axis, with the store's data balance; writes
bias_report.{json,md} and bias_scores.png into the run folder.

    promptly bias run_dir=latest                     # a training run
    promptly bias model=smollm2_135m_instruct        # a base model
    promptly bias served=true                        # the store's active model version
    promptly bias judge=openai_compatible            # a remote judge; the key from $OPENAI_API_KEY
    promptly bias calibrate                          # only the judge's pairwise accuracy on BBQ pairs

Every report first measures the judge (or reads its cached calibration): when it cannot be shown to tell
a biased answer from a fair one, the report says so in its first lines and leads with the figures that
need no judge.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console

from promptly.errors import ConfigError, InputNotFoundError
from promptly.store.open import opened_store
from promptly.verbs.entry import hydra_entry, task_overrides
from promptly.verbs.task_wrapper import TaskOutput

log = logging.getLogger(__name__)


def _plain(node: Any) -> dict[str, Any]:
    return dict(OmegaConf.to_container(node, resolve=True, enum_to_str=True))  # type: ignore[arg-type]


def choose_served(cfg: DictConfig) -> DictConfig:
    """With served=true, model_dir becomes the store's active version's folder (what the server loads)."""
    if not cfg.get("served"):
        return cfg
    if cfg.get("run_dir") or cfg.get("model_dir"):
        raise ConfigError("served=true probes the active model version: leave run_dir and model_dir empty")
    with opened_store(cfg.store) as store:
        active = store.active_model_version()
    if active is None:
        raise InputNotFoundError("served=true: no model version is active (promote one with "
                                 "`promptly publish promote`)")
    location = str(active.config.get("location") or "")
    if not Path(location).is_dir():
        raise InputNotFoundError(f"served=true: active version {active.repo_id}:{active.version} is at "
                                 f"{location or '(no location)'}, not a local folder; pass model_dir=")
    with open_dict(cfg):
        cfg.model_dir = location
    return cfg


def judge_calibration(cfg: DictConfig, judge: Any, rubric: Any, console: Console) -> Any:
    """The judge's calibration for this config (cached per judge config, rubric and pair settings)."""
    from promptly.bias.calibration import measure

    found = measure(judge, rubric, _plain(cfg.calibration), Path(cfg.paths.state_dir))
    style = "green" if found.calibrated else "yellow"
    note = " (cached)" if found.cached else (f" ({found.seconds:.0f} s)" if found.error is None else "")
    console.print(f"[{style}]calibration{note}: {found.headline()}[/]")
    return found


def calibrate(cfg: DictConfig, console: Console | None = None) -> dict[str, Any]:
    """`promptly bias calibrate`: the judge on the reference pairs only; calibration.{json,md}."""
    import json

    from promptly.bias.rubric import Rubric

    console = console or Console(stderr=True)
    rubric = Rubric.from_config(_plain(cfg.bias_rubric))
    judge = instantiate(cfg.judge)
    found = judge_calibration(cfg, judge, rubric, console)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = found.to_dict()
    (out / "calibration.json").write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")
    (out / "calibration.md").write_text(f"# Judge calibration: {found.judge}\n\n{found.markdown()}\n",
                                        encoding="utf-8")
    console.print(found.markdown())
    return record


def run(cfg: DictConfig, console: Console | None = None) -> dict[str, Any]:
    """Probe, grade, summarise, report; returns bias_report.json's headline (also what tests call)."""
    from promptly.answering import Answerer
    from promptly.bias.balance import BalanceSettings, check_balance
    from promptly.bias.config import Thresholds
    from promptly.bias.pairwise import PairJudge
    from promptly.bias.probes import load_probe_set
    from promptly.bias.report import write_bias_report
    from promptly.bias.rubric import Rubric
    from promptly.bias.scoring import answerer_responder, run_probes, summarize
    from promptly.model.config import SamplingConfig
    from promptly.model.loading import adopt_model_data, load_model
    from promptly.retrieval import Retriever

    console = console or Console(stderr=True)
    cfg = adopt_model_data(choose_served(cfg), task_overrides())
    torch.manual_seed(int(cfg.seed))
    rubric = Rubric.from_config(_plain(cfg.bias_rubric))
    probe_set = load_probe_set(cfg.probes.path)
    probes = probe_set.probes(list(cfg.probes.axes) or None, cfg.probes.templates_per_axis, int(cfg.seed))
    judge = instantiate(cfg.judge)  # its model loads on first use
    if isinstance(judge, PairJudge):
        raise ConfigError(f"judge: {judge.name} compares two answers and grades none; use it with "
                          "`promptly bias calibrate`, and a grading judge (local_hf, openai_compatible) here")
    balance = None
    with opened_store(cfg.store) as store:
        if cfg.balance.check:  # first: a refused imbalance stops before any model is loaded
            settings = {k: v for k, v in _plain(cfg.balance).items() if k != "check"}
            balance = check_balance(store, BalanceSettings(**settings))
        loaded = load_model(cfg)
        embedder = instantiate(cfg.embedder)
        retriever = Retriever(store, embedder, k=int(cfg.retrieval.k), mode=str(cfg.retrieval.mode))
        answerer = Answerer(loaded, retriever, SamplingConfig(**_plain(cfg.generation)))
        respond = answerer_responder(answerer, store_closer=store.close)
        calibration = judge_calibration(cfg, judge, rubric, console)
        console.print(f"bias: {len(probes)} probes on {len(set(p.axis for p in probes))} axes, judged by {judge.name}")
        results = run_probes(probes, respond, judge, rubric, probe_set)
    summary = summarize(results, probes, embedder, Thresholds(**_plain(cfg.thresholds)))
    if balance is not None:
        summary["overall"]["data_max_share"] = balance.max_share
    settings_out = {"name": loaded.name, "model": loaded.origin, "checkpoint": loaded.checkpoint or "(base model)",
                    "judge": judge.name, "probes": len(probes), "probe_set": cfg.probes.path or "packaged",
                    "retrieval": f"{cfg.retrieval.mode}, k={cfg.retrieval.k}", "generation": _plain(cfg.generation)}
    files = write_bias_report(Path(cfg.paths.output_dir), summary, results, settings_out,
                              balance.to_dict() if balance else None, balance.markdown() if balance else None,
                              {"name": rubric.name, "criterion": rubric.criterion, "scores": list(rubric.scores)},
                              calibration)
    _log_metrics(cfg, summary["overall"])
    unscored = sum(1 for r in results if r.score is None)
    if unscored:
        console.print(f"[yellow]{unscored} of {len(results)} answers are unscored (the judge gave no valid score): "
                      "see the report's 'Unscored answers'[/]")
    untrusted = "" if calibration.calibrated else " (score gaps come from an uncalibrated judge: not evidence)"
    for axis, values in summary["axes"].items():
        if values["flagged"]:
            console.print(f"[yellow]{axis}: {'; '.join(values['reasons'])}{untrusted}[/]")
    console.print(f"report: {files.markdown}")
    return {"overall": summary["overall"], "axes": summary["axes"], "judge_calibrated": calibration.calibrated,
            "calibration": calibration.to_dict(), "files": {k: str(v) for k, v in vars(files).items()}}


def _log_metrics(cfg: DictConfig, overall: dict[str, float | None]) -> None:
    from promptly.utils.instantiators import instantiate_loggers

    for logger in instantiate_loggers(cfg.get("logger")):
        logger.log_metrics({f"bias/{k}": v for k, v in overall.items() if v is not None})
        logger.finalize("success")


def task(cfg: DictConfig) -> TaskOutput:
    if str(cfg.get("action", "report")) == "calibrate":
        record = calibrate(cfg)
        alike = record["overall"].get("alike") or {}
        metrics = {"judge_calibrated": float(record["judge_calibrated"])}
        if alike.get("accuracy") is not None:
            metrics["judge_alike_accuracy"] = float(alike["accuracy"])
        return metrics, {"calibration": record}
    report = run(cfg)
    metrics = {k: float(v) for k, v in report["overall"].items() if v is not None}
    return metrics | {"judge_calibrated": float(report["judge_calibrated"])}, {"report": report}


main = hydra_entry("bias")(task)


if __name__ == "__main__":
    main()
