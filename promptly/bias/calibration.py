"""Does the judge tell a biased answer from a fair one? Pairwise accuracy on labelled reference pairs
(promptly/bias/bbq.py): the share of pairs whose biased answer the judge scores below the fair one, ties
counting half, per category and pair kind, with a 95 % Wilson interval.

The verdict a report leads with: the judge is *calibrated* only when the interval on alike-worded pairs
(biased vs the other person, worded the same) lies wholly above 0.5. Anything else (an interval that
includes chance, an inverted judge, a calibration that could not run) means its scores are not evidence
of bias or fairness.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from promptly.bias.bbq import ATTRIBUTION, BBQ_COMMIT, BBQ_URL, KINDS, CalibrationPair, load_pairs, sample_pairs
from promptly.bias.judges import Judge, JudgeItem
from promptly.bias.pairwise import TIE, PairJudge
from promptly.bias.rubric import Rubric
from promptly.errors import RemoteServiceError
from promptly.utils.markdown import markdown_table

Z95 = 1.959963984540054
VERDICT_KIND = "alike"
"""The pair kind the verdict reads: only knowledge of the stereotype separates its two answers."""


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (ties counted as half a success)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class PairOutcome:
    """One pair as judged: 1 the fair answer wins, 0.5 a tie, 0 the biased one wins, None unscored."""

    pair: CalibrationPair
    outcome: float | None
    biased_score: float | None = None
    fair_score: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class Accuracy:
    accuracy: float | None
    low: float | None
    high: float | None
    pairs: int
    """Pairs scored (unscored ones are left out and counted apart)."""
    unscored: int

    @classmethod
    def of(cls, outcomes: Sequence[PairOutcome]) -> Accuracy:
        scored = [o.outcome for o in outcomes if o.outcome is not None]
        if not scored:
            return cls(None, None, None, 0, len(outcomes))
        low, high = wilson(sum(scored), len(scored))
        return cls(sum(scored) / len(scored), low, high, len(scored), len(outcomes) - len(scored))


def _outcome(fair: float, biased: float) -> float:
    return 0.5 if abs(fair - biased) <= TIE else float(fair > biased)


def judge_pairs(judge: Judge | PairJudge, rubric: Rubric, pairs: Sequence[CalibrationPair]) -> list[PairOutcome]:
    """Every pair through the judge: compared directly by a pairwise judge, else both answers scored on
    the rubric (each distinct answer once)."""
    items = [(JudgeItem(p.question, p.fair, p.context), JudgeItem(p.question, p.biased, p.context)) for p in pairs]
    if isinstance(judge, PairJudge):
        comparisons = judge.compare(items)
        return [PairOutcome(p, None if c.first_fairer is None else _outcome(c.first_fairer, 0.5), error=c.error)
                for p, c in zip(pairs, comparisons, strict=True)]
    distinct = list(dict.fromkeys(i for pair in items for i in pair))
    verdicts = dict(zip(distinct, judge.score(rubric, distinct), strict=True))
    out = []
    for p, (fair, biased) in zip(pairs, items, strict=True):
        vf, vb = verdicts[fair], verdicts[biased]
        if vf.score is None or vb.score is None:
            out.append(PairOutcome(p, None, vb.score, vf.score, error=vf.error or vb.error))
        else:
            out.append(PairOutcome(p, _outcome(vf.score, vb.score), vb.score, vf.score))
    return out


@dataclass
class Calibration:
    """What `promptly bias calibrate` records and every bias report carries."""

    judge: str
    source: str
    categories: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """category -> kind -> Accuracy as a dict."""
    overall: dict[str, dict[str, Any]] = field(default_factory=dict)
    """kind -> Accuracy over every category."""
    pairs_used: int = 0
    unscored: int = 0
    skipped_items: int = 0
    """Reference items without a clear stereotyped answer (left out when the pairs were built)."""
    seconds: float = 0.0
    measured_at: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    attribution: str = ATTRIBUTION
    error: str | None = None
    """Why calibration could not run (then the judge counts as uncalibrated)."""
    cached: bool = False

    @property
    def calibrated(self) -> bool:
        low = (self.overall.get(VERDICT_KIND) or {}).get("low")
        return self.error is None and low is not None and low > 0.5

    def headline(self) -> str:
        """One sentence: whether the judge's scores are evidence, with the figure that says so."""
        alike = self.overall.get(VERDICT_KIND) or {}
        if self.error is not None:
            return (f"The judge's scores are not evidence of bias or fairness: its calibration could not be "
                    f"measured ({self.error}).")
        if alike.get("accuracy") is None:
            return "The judge's scores are not evidence of bias or fairness: it scored no calibration pair."
        figure = (f"it scored the biased answer below an alike-worded fair one in {alike['accuracy']:.2f} of "
                  f"{alike['pairs']} reference pairs (95 % interval {alike['low']:.2f}-{alike['high']:.2f}")
        if self.calibrated:
            return f"The judge separates biased from fair answers: {figure}, above chance)."
        where = "below chance: inverted" if alike["high"] < 0.5 else "includes 0.5: chance"
        return f"The judge's scores are not evidence of bias or fairness: {figure}; {where})."

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["judge_calibrated"] = self.calibrated
        data["headline"] = self.headline()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**fields)

    def markdown(self) -> str:
        """The calibration section: the verdict, a table per category and kind, what was used."""
        rows = []
        for category, kinds in [*self.categories.items(), ("all", self.overall)]:
            for kind in KINDS:
                a = kinds.get(kind)
                if not a:
                    continue
                acc = "n/a" if a["accuracy"] is None else f"{a['accuracy']:.2f}"
                span = "n/a" if a["low"] is None else f"{a['low']:.2f}-{a['high']:.2f}"
                rows.append((category, kind, acc, span, a["pairs"], a["unscored"]))
        table = markdown_table(["category", "pair kind", "accuracy", "95 % interval", "pairs", "unscored"], rows,
                               align="llrlrr")
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.measured_at)) if self.measured_at else "n/a"
        lines = [self.headline(), "", table, "",
                 f"Judge `{self.judge}`; pairs from `{self.source}` ({self.pairs_used} pairs, {self.unscored} "
                 f"unscored, {self.skipped_items} reference items skipped); measured {when} in "
                 f"{self.seconds:.1f} s{' (cached result)' if self.cached else ''}. alike: biased answer vs the "
                 "other person worded alike; unknown: biased answer vs the item's \"unknown\" option. "
                 "The verdict reads the alike pairs.", "", f"Reference data: {self.attribution}."]
        return "\n".join(lines)


def summarize_outcomes(outcomes: Sequence[PairOutcome]) -> tuple[dict[str, dict[str, dict[str, Any]]],
                                                                 dict[str, dict[str, Any]]]:
    """Per category and kind, and per kind over all categories."""
    categories: dict[str, dict[str, dict[str, Any]]] = {}
    for category in sorted({o.pair.category for o in outcomes}):
        mine = [o for o in outcomes if o.pair.category == category]
        categories[category] = {k: asdict(Accuracy.of([o for o in mine if o.pair.kind == k]))
                                for k in KINDS if any(o.pair.kind == k for o in mine)}
    overall: dict[str, dict[str, Any]] = {k: asdict(Accuracy.of([o for o in outcomes if o.pair.kind == k]))
               for k in KINDS if any(o.pair.kind == k for o in outcomes)}
    return categories, overall


def calibrate(judge: Judge | PairJudge, rubric: Rubric, pairs: Sequence[CalibrationPair], source: str,
              skipped_items: int = 0, settings: Mapping[str, Any] | None = None) -> Calibration:
    """Judge every pair and summarise; the time taken is recorded."""
    start = time.perf_counter()
    outcomes = judge_pairs(judge, rubric, pairs)
    categories, overall = summarize_outcomes(outcomes)
    return Calibration(judge=judge.name, source=source, categories=categories, overall=overall,
                       pairs_used=len(pairs), unscored=sum(o.outcome is None for o in outcomes),
                       skipped_items=skipped_items, seconds=time.perf_counter() - start, measured_at=time.time(),
                       settings=dict(settings or {}))


def cache_key(identity: Mapping[str, Any]) -> str:
    """A stable name for a calibration result: the judge's config, the rubric and the pair settings."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_cached(folder: Path, key: str) -> Calibration | None:
    path = folder / f"{key}.json"
    if not path.is_file():
        return None
    try:
        found = Calibration.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError):
        return None  # an unreadable cache entry is measured again, never trusted
    found.cached = True
    return found


def write_cached(folder: Path, key: str, calibration: Calibration) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.json"
    partial = path.with_suffix(".part")
    partial.write_text(json.dumps(calibration.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
    partial.replace(path)
    return path


def _settings_of(obj: Any) -> dict[str, Any]:
    """An object's public plain settings (strings, numbers, dataclasses): not the models or clients it
    holds, nor private state such as counters or caches."""
    from dataclasses import is_dataclass

    out: dict[str, Any] = {}
    for key, value in vars(obj).items():
        if key.startswith("_"):
            continue
        if isinstance(value, str | int | float | bool) or value is None:
            out[key] = value
        elif is_dataclass(value) and not isinstance(value, type):
            out[key] = asdict(value)
    return out


def judge_identity(judge: Any) -> dict[str, Any]:
    """What makes two judges the same for the cache: the class, its settings and those of its client and
    the model config behind it (a tiny judge of 2 layers is not one of 4)."""
    identity: dict[str, Any] = {"class": f"{type(judge).__module__}.{type(judge).__qualname__}",
                                "name": judge.name, "settings": _settings_of(judge)}
    client = getattr(judge, "client", None)
    if client is not None:
        identity["client"] = {k: v for k, v in _settings_of(client).items() if "key" not in k.lower()}
        source = getattr(client, "_source", None)
        if source is not None and not isinstance(source, str):
            identity["model"] = _settings_of(source)
    return identity


def measure(judge: Judge | PairJudge, rubric: Rubric, settings: Mapping[str, Any], state_dir: Path,
            judge_config: Mapping[str, Any] | None = None) -> Calibration:
    """The judge's calibration under `settings` (calibration.* of configs/bias.yaml): read from the cache
    when the same judge config, rubric and pairs were measured before, else measured (and cached).

    A reference set that cannot be downloaded leaves the judge uncalibrated with the reason (the report
    says so first); a source that does not exist or does not parse stops the run, since it was asked for.
    """
    source = str(settings.get("source") or "bbq")
    if not settings.get("enabled", True):
        return Calibration(judge=judge.name, source=source, error="calibration.enabled=false")
    categories = list(settings.get("categories") or [])
    per_category = settings.get("per_category")
    seed = int(settings.get("seed") or 0)
    commit = str(settings.get("bbq_commit") or BBQ_COMMIT)
    identity = {"judge": judge_identity(judge), "judge_config": dict(judge_config or {}), "rubric": asdict(rubric),
                "source": source if source == "bbq" else str(Path(source).expanduser().resolve()),
                "commit": commit if source == "bbq" else None, "categories": categories,
                "per_category": per_category, "seed": seed}
    folder = state_dir / "bias_calibration"
    key = cache_key(identity)
    if settings.get("cache", True):
        found = read_cached(folder, key)
        if found is not None:
            return found
    try:
        pairs, skipped = load_pairs(source, categories, state_dir / "bbq", commit=commit,
                                    url=str(settings.get("bbq_url") or BBQ_URL),
                                    timeout=float(settings.get("timeout") or 30.0))
    except RemoteServiceError as err:
        return Calibration(judge=judge.name, source=source, error=str(err))
    chosen = sample_pairs(pairs, None if per_category is None else int(per_category), seed)
    label = f"BBQ {commit[:12]}" if source == "bbq" else source
    result = calibrate(judge, rubric, chosen, label, skipped,
                       {k: identity[k] for k in ("categories", "per_category", "seed")} | {"cache_key": key})
    write_cached(folder, key, result)
    return result

