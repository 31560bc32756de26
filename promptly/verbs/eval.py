"""`promptly eval`: answer a split's questions through the RAG answer path, score them, write the report.

    promptly eval run_dir=logs/train/runs/<time>      # a training run's best checkpoint and settings
    promptly eval run_dir=latest                      # the newest training run
    promptly eval model=smollm2_135m_instruct         # a base model, for comparison
    promptly eval compare=[logs/eval/runs/<a>,logs/eval/runs/<b>]     # runs side by side

An evaluation of a training run is also recorded in that run's `evaluations.jsonl`, so publishing
finds the report a version is judged by.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from promptly.answering import Answerer
from promptly.errors import EmptyInputError
from promptly.evaluation.config import MetricConfig
from promptly.evidence import strip_markers
from promptly.model.config import SamplingConfig
from promptly.model.loading import adopt_model_data, load_model
from promptly.records import Answer, Chunk, QAPair
from promptly.retrieval import Retriever
from promptly.settings import EvidenceSettings
from promptly.store.open import opened_store
from promptly.verbs.entry import hydra_entry, task_overrides
from promptly.verbs.task_wrapper import TaskOutput

log = logging.getLogger(__name__)
EVALUATIONS_FILE = "evaluations.jsonl"
"""In a training run folder: one line per evaluation of it (report folder, split, metrics)."""


def _plain(node: Any) -> dict[str, Any]:
    return dict(OmegaConf.to_container(node, resolve=True, enum_to_str=True))  # type: ignore[arg-type]


def run(cfg: DictConfig, console: Console | None = None) -> dict[str, Any]:
    """Evaluate as configured; returns report.json's content (also what tests call)."""
    from promptly.evaluation.metrics import EvalExample, evaluate_examples
    from promptly.evaluation.perplexity import reference_nll
    from promptly.evaluation.prompts import reference_sequences
    from promptly.evaluation.report import compare_reports, comparison_console_table, write_report

    console = console or Console(stderr=True)
    out_dir = Path(cfg.paths.output_dir)
    if cfg.get("compare"):
        runs = report_names([Path(p) for p in cfg.compare])
        compare_reports(runs, out_dir)  # compare.md and compare.png; the terminal gets a table that fits it
        console.print(comparison_console_table(runs))
        return {"compare": list(cfg.compare)}
    cfg = adopt_model_data(cfg, task_overrides())
    torch.manual_seed(int(cfg.seed))
    if cfg.get("questions") and cfg.questions.get("path"):
        return run_question_file(cfg, console, out_dir)
    sampling = SamplingConfig(**_plain(cfg.generation))
    metric_cfg = MetricConfig(**_plain(cfg.metrics))
    # recall@k of more chunks than were retrieved would only repeat recall@retrieval.k under another name.
    k = int(cfg.retrieval.k)
    metric_cfg.recall_ks = tuple(sorted({n for n in metric_cfg.recall_ks if n <= k} | {k}))
    loaded = load_model(cfg)
    embedder = instantiate(cfg.embedder)
    with opened_store(cfg.store) as store:
        pairs = list(store.iter_qa_pairs(split=str(cfg.split)))[: cfg.limit or None]  # type: ignore[arg-type]
        if not pairs:
            raise EmptyInputError(f"the {cfg.split} split has no QA pairs: run `promptly ingest` (with "
                                  "ingest.qa.path) or choose split=validation")
        retriever = Retriever(store, embedder, k=int(cfg.retrieval.k), mode=str(cfg.retrieval.mode))
        answerer = Answerer(loaded, retriever, sampling, EvidenceSettings(**_plain(cfg.evidence)))
        prepared = answerer.prepare([p.question for p in pairs])
        gold = store.get_chunks(sorted({c for p in pairs for c in p.chunk_ids}))
    started = time.perf_counter()
    with Progress(TextColumn("[bold]generate[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("", total=len(prepared))
        answers = answerer.answer_prepared(prepared, on_batch=lambda n: progress.update(task, advance=n))
    generation_s = time.perf_counter() - started
    predictions = [strip_markers(a.text) for a in answers]  # text metrics compare words, not [n]
    nll = reference_nll(loaded.model, loaded.tokenizer,
                        reference_sequences(prepared, [p.answer for p in pairs], answerer.encoder),
                        sampling.batch_size)
    examples = [
        EvalExample(question=pair.question, reference=pair.answer, prediction=pred,
                    contexts=[c["content"] for c in q.chunks], retrieved_chunk_ids=[c["chunk_id"] for c in q.chunks],
                    gold_chunk_ids=pair.chunk_ids, id=pair.id, answer_nll=loss, answer_tokens=tokens)
        for pair, q, pred, (loss, tokens) in zip(pairs, prepared, predictions, nll, strict=True)
    ]
    empty = sum(1 for e in examples if not e.prediction.strip())
    if empty:
        console.print(f"[yellow]{empty} of {len(examples)} answers are empty: they score 0[/]")
    result = evaluate_examples(examples, embedder, config=metric_cfg)
    add_evidence_scores(result, answers, pairs)
    add_chunk_labels(result, prepared, pairs, gold)
    settings = {"name": loaded.name, "model": loaded.origin, "checkpoint": loaded.checkpoint or "(base model)",
                "split": str(cfg.split), "examples": len(examples),
                "retrieval": f"{cfg.retrieval.mode}, k={cfg.retrieval.k}", "generation": str(_plain(cfg.generation)),
                "answers_per_second": round(len(examples) / generation_s, 2),
                "contexts_truncated": sum(1 for p in prepared if p.context_cut), "empty_answers": empty,
                "answer_style": str(cfg.evidence.answer_style), "abstain_below": float(cfg.evidence.abstain_below)}
    files = write_report(result, out_dir, settings, name=loaded.name)
    if loaded.run_dir:
        record_evaluation(Path(loaded.run_dir), out_dir, files.json, settings, result.overall)
    log_to_loggers(cfg, result.overall, result.per_example)
    console.print(f"report: {files.markdown}")
    return result.to_dict()


def run_question_file(cfg: DictConfig, console: Console, out_dir: Path) -> dict[str, Any]:
    """Answer a user's question file (`questions.path`: questions and expected facts) through the same answer
    path, and score key facts, citations and abstention (promptly/evaluation/question_file.py). Not recorded in
    a training run's evaluations.jsonl: publishing judges a version by its split's report."""
    from promptly.evaluation.question_file import evaluate_question_file, load_question_file, write_question_report

    questions = load_question_file(str(cfg.questions.path), str(cfg.questions.subset))
    loaded = load_model(cfg)
    embedder = instantiate(cfg.embedder)
    with opened_store(cfg.store) as store:
        retriever = Retriever(store, embedder, k=int(cfg.retrieval.k), mode=str(cfg.retrieval.mode))
        answerer = Answerer(loaded, retriever, SamplingConfig(**_plain(cfg.generation)),
                            EvidenceSettings(**_plain(cfg.evidence)))
        started = time.perf_counter()
        result = evaluate_question_file(answerer, questions)
        seconds = time.perf_counter() - started
    settings = {"name": loaded.name, "model": loaded.origin, "checkpoint": loaded.checkpoint or "(base model)",
                "questions": str(cfg.questions.path), "subset": str(cfg.questions.subset),
                "examples": len(questions), "retrieval": f"{cfg.retrieval.mode}, k={cfg.retrieval.k}",
                "generation": str(_plain(cfg.generation)), "answers_per_second": round(len(questions) / seconds, 3),
                "answer_style": str(cfg.evidence.answer_style), "abstain_below": float(cfg.evidence.abstain_below)}
    _, md_path = write_question_report(result, out_dir, settings)
    log_to_loggers(cfg, result.overall, result.per_example)
    for key, value in result.overall.items():
        console.print(f"{key:>22}  {value:.4f}")
    console.print(f"report: {md_path}")
    return {"settings": settings, **result.to_dict()}


def add_evidence_scores(result: Any, answers: list[Answer], pairs: list[QAPair]) -> None:
    """Evidence scores per example (the reference's key terms stand in for facts) and their means overall:
    abstained, key_fact_recall, evidence_fact_recall, citation_hit, retrieval_hit."""
    from promptly.evaluation.evidence_metrics import key_terms, score_answer

    for row, answer, pair in zip(result.per_example, answers, pairs, strict=True):
        scores = score_answer(answer, key_terms(pair.answer, pair.question), pair.document_id)
        row["scores"].update(scores.as_dict())
        row["details"]["evidence"] = [e.sentence for e in answer.evidence]
        row["details"]["answer_with_markers"] = answer.text
    for key in ("abstained", "key_fact_recall", "evidence_fact_recall", "citation_hit", "retrieval_hit"):
        values = [v for row in result.per_example if (v := row["scores"].get(key)) is not None]
        if values:
            result.overall[key] = sum(values) / len(values)


def add_chunk_labels(result: Any, prepared: list[Any], pairs: list[QAPair], gold: dict[str, Chunk]) -> None:
    """Name each example by its gold chunk's document title and ordinal, and each retrieved chunk likewise,
    so the report's worst examples say where to look rather than a UUID."""
    from promptly.evaluation.report import chunk_label

    for row, question, pair in zip(result.per_example, prepared, pairs, strict=True):
        row["retrieved_chunk_labels"] = [chunk_label(c.get("title"), c["document_id"], c["ordinal"])
                                         for c in question.chunks]
        source = next((gold[c] for c in pair.chunk_ids if c in gold), None)
        row["label"] = (chunk_label(source.metadata.get("title"), source.document_id, source.ordinal)
                        if source else pair.document_id)


def report_names(paths: list[Path]) -> dict[str, Path]:
    """Each report under the name of the model it evaluated (its folder's name when that repeats)."""
    names: dict[str, Path] = {}
    for path in paths:
        report = path / "report.json" if path.is_dir() else path
        settings = json.loads(report.read_text(encoding="utf-8")).get("settings", {}) if report.is_file() else {}
        name = str(settings.get("name") or path.name)
        names[name if name not in names else f"{name} ({path.name})"] = path
    return names


def record_evaluation(run_dir: Path, report_dir: Path, report_json: Path, settings: dict[str, Any],
                      overall: dict[str, float]) -> None:
    """Append this evaluation to the training run's evaluations.jsonl (publishing reads the newest)."""
    line = {"report_dir": str(report_dir.resolve()), "report_json": str(report_json.resolve()),
            "split": settings["split"], "examples": settings["examples"], "metrics": overall,
            "checkpoint": settings["checkpoint"], "created_at": datetime.now(UTC).isoformat()}
    with (run_dir / EVALUATIONS_FILE).open("a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


def log_to_loggers(cfg: DictConfig, overall: dict[str, float], per_example: list[dict[str, Any]]) -> None:
    """Headline metrics to every configured logger; per-example rows as a table where the logger has one."""
    from promptly.utils.instantiators import instantiate_loggers
    from promptly.utils.metric_logger import metric_loggers

    scores = sorted({k for row in per_example for k in row.get("scores", {})})
    data = [[row["question"], row["reference"], row["prediction"], *[row.get("scores", {}).get(s) for s in scores]]
            for row in per_example]
    for logger in metric_loggers(instantiate_loggers(cfg.get("logger"))):
        logger.log_dict({f"eval/{k}": v for k, v in overall.items() if v is not None})
        logger.log_table("eval/examples", ["question", "reference", "prediction", *scores], data)
        logger.close()


def task(cfg: DictConfig) -> TaskOutput:
    report = run(cfg)
    overall = report.get("overall", {})
    return {k: float(v) for k, v in overall.items() if isinstance(v, int | float)}, {"report": report}


main = hydra_entry("eval")(task)


if __name__ == "__main__":
    main()
