"""`promptly ask "QUESTION"`: one answer through the RAG answer path, with numbered citations.

    promptly ask "How do I install driftsync?"                 # the newest training run answers
    promptly ask "..." model=smollm2_135m_instruct             # a base model
    promptly ask "..." format=json                             # one JSON object on one line
    promptly ask "..." evidence.answer_style=extractive        # quote the supporting sentences instead
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from dataclasses import asdict
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console
from rich.markup import escape

from promptly.answering import Answerer
from promptly.errors import EmptyInputError
from promptly.evidence import display
from promptly.model.config import SamplingConfig
from promptly.records import Answer
from promptly.retrieval import Retriever
from promptly.settings import EvidenceSettings
from promptly.store.open import opened_store
from promptly.verbs.entry import hydra_entry, task_overrides
from promptly.verbs.task_wrapper import TaskOutput

log = logging.getLogger(__name__)


def answer_json(answer: Answer) -> dict[str, Any]:
    """What `format=json` prints: the answer (with its [n] markers), its sources, the sentences it rests on,
    whether it abstained, the model and the seconds taken."""
    return {"answer": answer.text,
            "citations": [{k: v for k, v in asdict(c).items() if k in ("number", "chunk_id", "document_id",
                                                                      "ordinal", "title", "score")}
                          for c in answer.citations],
            "evidence": evidence_json(answer),
            "abstained": answer.abstained, "style": answer.style, "support": answer.support,
            "model": answer.model, "seconds": round(answer.seconds, 3)}


def evidence_json(answer: Answer) -> list[dict[str, Any]]:
    """The supporting sentences: citation number, chunk, the verbatim sentence and its offsets in the chunk."""
    return [asdict(e) for e in answer.evidence]


def print_answer(console: Console, answer: Answer) -> None:
    console.print(escape(answer.text) or "[yellow](the model gave an empty answer)[/]")
    console.print("\n[bold]Sources[/]")
    for c in answer.citations:
        score = "" if c.score is None else f", score {c.score:.4f}"
        console.print(f"  [{c.number}] {escape(c.title)} — {escape(c.document_id)} chunk {c.ordinal}{score}")
        for e in answer.evidence:
            if e.number == c.number:
                shown = e.shown or display(e.sentence)  # a table row with its column names
                console.print(f'      [green]“{escape(shown)}”[/] [dim](support {e.support:.2f})[/]')
    console.print(f"\n[dim]answered by {escape(answer.model)} in {answer.seconds:.1f} s ({answer.style})[/]")


def run(cfg: DictConfig, console: Console | None = None) -> Answer:
    """Answer cfg.question; also what tests call."""
    question = str(cfg.question or "").strip()
    if not question:
        raise EmptyInputError('no question: promptly ask "YOUR QUESTION"')
    if not (cfg.get("run_dir") or cfg.get("model_dir") or cfg.get("model") is not None):
        with open_dict(cfg):
            cfg.run_dir = "latest"
    if str(cfg.format) == "json":  # stdout carries the one JSON line: whatever a library prints goes to stderr
        with contextlib.redirect_stdout(sys.stderr):
            answer = _answer(cfg, question)
        print(json.dumps(answer_json(answer), ensure_ascii=False), flush=True)
    else:
        answer = _answer(cfg, question)
        print_answer(console or Console(), answer)
    return answer


def _answer(cfg: DictConfig, question: str) -> Answer:
    from promptly.model.loading import adopt_model_data, load_model

    cfg = adopt_model_data(cfg, task_overrides())
    with opened_store(cfg.store) as store:
        status = store.status()
        if not status.applied_migrations or status.chunks == 0:
            raise EmptyInputError("the store holds no documents to answer from: run `promptly ingest` first")
        loaded = load_model(cfg)
        sampling = SamplingConfig(**OmegaConf.to_container(cfg.generation, resolve=True))  # type: ignore[arg-type]
        retriever = Retriever(store, instantiate(cfg.embedder), k=int(cfg.retrieval.k), mode=str(cfg.retrieval.mode))
        filter_ = OmegaConf.to_container(cfg.filter, resolve=True) if cfg.get("filter") else None
        evidence = EvidenceSettings(**OmegaConf.to_container(cfg.evidence, resolve=True))  # type: ignore[arg-type]
        answer = Answerer(loaded, retriever, sampling, evidence).answer([question],
                                                                        filter=filter_)[0]  # type: ignore[arg-type]
    return answer


def task(cfg: DictConfig) -> TaskOutput:
    answer = run(cfg)
    return {"seconds": answer.seconds}, {"answer": answer}


main = hydra_entry("ask", run_folder=False)(task)
