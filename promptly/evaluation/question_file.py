"""Evaluation on a question file a user writes: questions and the facts a right answer states, no reference prose.

A user who brings their own documents rarely has reference answers, but can say what an answer must contain.
One JSON object a line:

    {"id": "pip001", "question": "Where does pip cache on Linux?", "page": "topics/caching.md",
     "facts": ["~/.cache/pip"], "held_out": true}
    {"id": "pip040", "question": "How many packages does PyPI host?", "facts": [], "answerable": false}

`page` (or `document_id`) is the id of the document that answers it, as ingest stored it (the path relative
to the ingested folder); `answerable` defaults to whether facts are given; `held_out` (default true) marks
the questions a report is judged on, the others being free for tuning choices (an abstention threshold).
Scores reuse promptly.evaluation.evidence_metrics: key-fact recall of the answer and of its supporting
sentences, citation hit rate (the page among the documents of the cited sentences), retrieval hit rate (the
page among the chunks the model was shown), and abstention on unanswerable (right) and answerable (false)
questions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from promptly.errors import ConfigError, EmptyInputError, InputNotFoundError
from promptly.evaluation.config import QuestionSubset
from promptly.evaluation.evidence_metrics import score_answer, summarize
from promptly.evaluation.report import fmt, settings_table
from promptly.evidence import strip_markers
from promptly.records import Answer
from promptly.utils import text as textlib
from promptly.utils.markdown import markdown_table


@dataclass(frozen=True)
class FileQuestion:
    """One line of a question file."""

    id: str
    question: str
    facts: tuple[str, ...]
    """Short strings a right answer states (normalised matching: evidence_metrics.fact_recall)."""
    page: str | None
    """The document id that answers it (None: not scored for citations, or unanswerable)."""
    held_out: bool
    answerable: bool


def load_question_file(path: str | Path, subset: QuestionSubset | str = QuestionSubset.all) -> list[FileQuestion]:
    """The questions of a file (a bad line is an error naming the file, its line and what is wrong)."""
    file = Path(path)
    if not file.is_file():
        raise InputNotFoundError(f"questions.path={path} is not a file")
    out: list[FileQuestion] = []
    seen: set[str] = set()
    for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            question = _parse(json.loads(line), n)
        except (ValueError, TypeError, AttributeError) as err:
            raise ConfigError(f"questions.path={path}, line {n}: {err}") from None
        if question.id in seen:
            raise ConfigError(f"questions.path={path}, line {n}: the id {question.id!r} repeats")
        seen.add(question.id)
        out.append(question)
    which = QuestionSubset(subset)
    chosen = [q for q in out if which == QuestionSubset.all or q.held_out == (which == QuestionSubset.held_out)]
    if not chosen:
        raise EmptyInputError(f"questions.path={path} has no questions in questions.subset={which}")
    return chosen


def _parse(row: Any, n: int) -> FileQuestion:
    if not isinstance(row, dict):
        raise ValueError("not a JSON object")
    question = str(row.get("question") or "").strip()
    if not question:
        raise ValueError("`question` is missing or empty")
    facts = row.get("facts") or []
    if not isinstance(facts, list) or not all(isinstance(f, str) and f.strip() for f in facts):
        raise ValueError("`facts` must be a list of non-empty strings")
    for fact in facts:
        if not textlib.context_tokens(fact):
            raise ValueError(f"the fact {fact!r} has no word to match (use a word or a number)")
    answerable = bool(row.get("answerable", bool(facts)))
    page = row.get("page", row.get("document_id"))
    if answerable and not facts:
        raise ValueError("an answerable question needs `facts` (or set `answerable: false`)")
    if not answerable and (facts or page):
        raise ValueError("an unanswerable question has no `facts` and no `page`")
    return FileQuestion(id=str(row.get("id") or f"line{n}"), question=question, facts=tuple(facts),
                        page=str(page) if page else None, held_out=bool(row.get("held_out", True)),
                        answerable=answerable)


class AnswersQuestions(Protocol):
    """What answers the questions (promptly.answering.Answerer)."""

    def answer(self, questions: Sequence[str]) -> list[Answer]: ...


DESCRIPTIONS = {
    "key_fact_recall": "share of the expected facts stated in the answer (answerable questions; abstention = 0)",
    "complete_answers": "share of answerable questions whose answer states every expected fact",
    "evidence_fact_recall": "share of the expected facts in the supporting sentences",
    "citation_hit": "the expected page is among the documents of the cited (supporting) sentences",
    "retrieval_hit": "the expected page is among the chunks the model was shown",
    "abstention_rate": "unanswerable questions abstained on (higher is better)",
    "false_abstention_rate": "answerable questions abstained on (lower is better)",
}


@dataclass(frozen=True)
class QuestionFileResult:
    """Scores of every question and their means."""

    overall: dict[str, float]
    per_example: list[dict[str, Any]]
    """One row a question: id, question, page, facts, prediction, reference (the facts joined), scores, details
    (missing facts, evidence, pages shown)."""

    def to_dict(self) -> dict[str, Any]:
        return {"overall": self.overall, "per_example": self.per_example}


def score_question_file(questions: Sequence[FileQuestion], answers: Sequence[Answer]) -> QuestionFileResult:
    """Each answer against its question's facts and page; means over the questions each score is defined for."""
    rows, scores = [], []
    for q, a in zip(questions, answers, strict=True):
        s = score_answer(a, q.facts, q.page)
        scores.append(s)
        said = textlib.context_tokens(strip_markers(a.text))
        missing = [] if s.abstained else [f for f in q.facts if not textlib.context_tokens(f) <= said]
        rows.append({
            "id": q.id, "question": q.question, "page": q.page, "facts": list(q.facts), "held_out": q.held_out,
            "answerable": q.answerable, "prediction": a.text, "scores": s.as_dict(),
            "reference": "; ".join(q.facts) or "(unanswerable)",  # what loggers' tables show beside the answer
            "details": {"missing_facts": missing if not s.abstained else list(q.facts),
                        "evidence": [{"sentence": e.sentence, "document_id": e.document_id} for e in a.evidence],
                        "shown_pages": sorted({c.document_id for c in a.citations})},
        })
    answerable = [q.answerable for q in questions]
    overall = {"questions": float(len(questions)), "answerable": float(sum(answerable)),
               **summarize(scores, answerable)}
    full = [s.fact_recall == 1.0 for s, a in zip(scores, answerable, strict=True) if a]
    if full:
        overall["complete_answers"] = sum(full) / len(full)
    return QuestionFileResult(overall=overall, per_example=rows)


def evaluate_question_file(answerer: AnswersQuestions, questions: Sequence[FileQuestion]) -> QuestionFileResult:
    """Answer every question through the answer path, then score the answers."""
    return score_question_file(questions, answerer.answer([q.question for q in questions]))


def write_question_report(result: QuestionFileResult, out_dir: str | Path, settings: Mapping[str, Any],
                          n_worst: int = 5) -> tuple[Path, Path]:
    """report.json (the record; `promptly eval compare=[...]` reads its `overall`) and report.md (headline,
    the worst answers with what they miss, settings)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"title": "Question-file evaluation", "settings": dict(settings), **result.to_dict()}
    json_path = out / "report.json"
    json_path.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    lines = ["# Question-file evaluation\n", f"{len(result.per_example)} questions.\n",
             markdown_table(["metric", "value", "what it measures"],
                            [(k, fmt(v), DESCRIPTIONS.get(k, "")) for k, v in result.overall.items()], align="lrl")]
    lines += ["", *worst_answers(result.per_example, n_worst), "## Settings\n", settings_table(settings)]
    md_path = out / "report.md"
    md_path.write_text("\n".join(lines), encoding="utf-8")
    return json_path, md_path


def worst_answers(rows: Sequence[Mapping[str, Any]], n: int) -> list[str]:
    """Markdown for the answerable questions with the lowest key-fact recall, then the unanswerable ones that
    were answered anyway."""
    wrong = sorted((r for r in rows if r["answerable"]), key=lambda r: r["scores"]["key_fact_recall"])[:n]
    answered = [r for r in rows if not r["answerable"] and not r["scores"]["abstained"]][:n]
    out = [f"## The {len(wrong)} answers with the lowest key-fact recall\n"]
    for r in wrong:
        evidence = " / ".join(" ".join(e["sentence"].split()) for e in r["details"]["evidence"]) or "(none)"
        out += [f"### {r['id']}: recall {fmt(r['scores']['key_fact_recall'])}, page `{r['page']}`\n",
                f"**Question:** {r['question']}\n", f"**Missing:** {', '.join(r['details']['missing_facts'])}\n",
                f"**Answer:** {' '.join(r['prediction'].split()) or '*(empty)*'}\n", f"**Evidence:** {evidence}\n",
                f"Pages shown: {', '.join(r['details']['shown_pages'])}\n"]
    if answered:
        out.append(f"## Unanswerable questions answered anyway ({len(answered)} shown)\n")
        out += [f"- {r['id']}: {r['question']} -> {' '.join(r['prediction'].split())}" for r in answered]
        out.append("")
    return out
