"""Ask every probe through a responder, grade the answers with a judge, and measure per axis: the mean
rubric score per group, the largest gap between groups, how far the answers to swapped questions
diverge (embedding distance), and the refusal rate per group; an axis is flagged past a threshold.

The responder is the model under test: in promptly it is the RAG answer path (`answerer_responder`),
so probes are answered with retrieval exactly as users are.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from promptly.bias.config import Thresholds
from promptly.bias.judges import Judge, JudgeItem
from promptly.bias.probes import Probe, ProbeSet
from promptly.bias.rubric import Rubric

PLACEHOLDER = "[PERSON]"


@dataclass(frozen=True)
class Response:
    """A responder's answer and the context it was given (what the judge checks grounding against)."""

    text: str
    context: str = ""
    sources: tuple[str, ...] = ()
    """The documents the context came from, as the answer cites them."""


Responder = Callable[[Sequence[str]], list[Response]]
"""Questions in, one Response per question out, in order."""


def answerer_responder(answerer: Any, store_closer: Callable[[], None] | None = None) -> Responder:
    """The RAG answer path as a responder: retrieve (then release the store), render, generate."""

    def respond(questions: Sequence[str]) -> list[Response]:
        try:
            prepared = answerer.prepare(list(questions))
        finally:
            if store_closer is not None:
                store_closer()
        texts = answerer.generate(prepared)
        return [Response(text=t, context="\n\n".join(str(c["content"]) for c in p.chunks),
                         sources=tuple(str(c["document_id"]) for c in p.chunks))
                for p, t in zip(prepared, texts, strict=True)]

    return respond


@dataclass(frozen=True)
class ProbeResult:
    """One probe, its answer and the verdict."""

    axis: str
    template: str
    group: str
    question: str
    answer: str
    score: float | None
    distribution: tuple[float, ...] | None
    feedback: str
    error: str | None
    refusal: bool
    sources: tuple[str, ...] = ()


def run_probes(probes: Sequence[Probe], respond: Responder, judge: Judge, rubric: Rubric,
               probe_set: ProbeSet) -> list[ProbeResult]:
    """Answer every probe (one batch, so greedy answers do not depend on order) and grade each answer."""
    responses = respond([p.question for p in probes])
    verdicts = judge.score(rubric, [JudgeItem(p.question, r.text, r.context) for p, r in zip(probes, responses,
                                                                                            strict=True)])
    return [ProbeResult(axis=p.axis, template=p.template, group=p.group, question=p.question, answer=r.text,
                        score=v.score, distribution=v.distribution, feedback=v.feedback, error=v.error,
                        refusal=probe_set.is_refusal(r.text), sources=r.sources)
            for p, r, v in zip(probes, responses, verdicts, strict=True)]


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


def neutral(answer: str, term: str) -> str:
    """The answer with the asker's own term replaced, so naming the group back is not counted as divergence."""
    return re.sub(re.escape(term), PLACEHOLDER, answer, flags=re.IGNORECASE) if term else answer


def divergence(results: Sequence[ProbeResult], terms: dict[tuple[str, str], str], embedder: Any) -> dict[str, float]:
    """Per axis: the mean cosine distance between the answers of every two groups to the same template."""
    sets: dict[tuple[str, str], list[ProbeResult]] = {}
    for r in results:
        sets.setdefault((r.axis, r.template), []).append(r)
    texts = [neutral(r.answer, terms.get((r.axis, r.group), "")) for r in results]
    vectors = np.asarray(embedder.embed_documents(texts), dtype=np.float64)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    index = {id(r): i for i, r in enumerate(results)}
    per_axis: dict[str, list[float]] = {}
    for (axis, _), members in sets.items():
        for a, b in itertools.combinations(members, 2):
            cos = float(vectors[index[id(a)]] @ vectors[index[id(b)]])
            per_axis.setdefault(axis, []).append(1.0 - cos)
    return {axis: float(np.mean(d)) for axis, d in per_axis.items()}


def summarize(results: Sequence[ProbeResult], probes: Sequence[Probe], embedder: Any,
              thresholds: Thresholds) -> dict[str, Any]:
    """Per-axis figures (groups, gap, divergence, refusals, flag) and the headline metrics."""
    terms = {(p.axis, p.group): p.term for p in probes}
    divergences = divergence(results, terms, embedder) if embedder is not None else {}
    axes: dict[str, Any] = {}
    for axis in dict.fromkeys(r.axis for r in results):
        rows = [r for r in results if r.axis == axis]
        groups: dict[str, Any] = {}
        for group in dict.fromkeys(r.group for r in rows):
            mine = [r for r in rows if r.group == group]
            scores = [r.score for r in mine if r.score is not None]
            groups[group] = {"mean_score": _mean(scores), "answers": len(mine), "unscored": len(mine) - len(scores),
                             "refusal_rate": sum(r.refusal for r in mine) / len(mine)}
        means = {g: v["mean_score"] for g, v in groups.items() if v["mean_score"] is not None}
        refusals = [v["refusal_rate"] for v in groups.values()]
        gap = max(means.values()) - min(means.values()) if len(means) >= 2 else None
        refusal_gap = max(refusals) - min(refusals)
        reasons = []
        if gap is not None and gap > thresholds.gap:
            reasons.append(f"score gap {gap:.2f} > {thresholds.gap}")
        if refusal_gap > thresholds.refusal_gap:
            reasons.append(f"refusal-rate gap {refusal_gap:.2f} > {thresholds.refusal_gap}")
        axes[axis] = {"groups": groups, "gap": gap, "refusal_gap": refusal_gap,
                      "lowest_group": min(means, key=lambda g: means[g]) if means else None,
                      "highest_group": max(means, key=lambda g: means[g]) if means else None,
                      "divergence": divergences.get(axis), "flagged": bool(reasons), "reasons": reasons}
    scored = [r.score for r in results if r.score is not None]
    gaps = [a["gap"] for a in axes.values() if a["gap"] is not None]
    divs = [a["divergence"] for a in axes.values() if a["divergence"] is not None]
    overall = {"bias_score": _mean(scored), "bias_gap": max(gaps) if gaps else None,
               "bias_divergence": _mean(divs),
               "bias_refusal_gap": max((a["refusal_gap"] for a in axes.values()), default=None),
               "bias_flagged_axes": float(sum(a["flagged"] for a in axes.values())),
               "bias_unscored": (len(results) - len(scored)) / len(results) if results else 0.0}
    return {"overall": overall, "axes": axes, "thresholds": asdict(thresholds)}
