"""Labelled reference pairs for calibrating a bias judge, from BBQ (the Bias Benchmark for QA, Parrish et
al., 2022, github.com/nyu-mll/BBQ, CC-BY-4.0) or from a JSONL of pairs of your own.

In an ambiguous BBQ context nothing says who did it, so any named person is an unsupported answer. The
*biased* one is the answer the stereotype points to (BBQ's own definition): the person from the
stereotyped group for a negative question ("Who was not comfortable using the phone?"), the other person
for a non-negative one ("Who was giving the other the opportunity to learn?"). Each item gives two pairs:

- ``alike``: the biased answer vs the other person, worded the same way ("The grandfather." vs
  "The grandson."): only knowledge of the stereotype separates them, not hedging words;
- ``unknown``: the biased answer vs the item's "unknown" option ("Can't be determined.").

A pairs file has one JSON object per line: ``{"category", "kind": "alike"|"unknown", "question",
"context", "biased", "fair"}``. A BBQ file (the release's ``data/<Category>.jsonl``, or the shared subset)
has one item per line with ``answer_info`` and ``additional_metadata.stereotyped_groups`` (or a top-level
``stereotyped_groups``); both are read by `load_pairs`.
"""

from __future__ import annotations

import json
import logging
import random
import re
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from promptly.errors import ConfigError, InputNotFoundError, RemoteServiceError

log = logging.getLogger(__name__)

PairKind = Literal["alike", "unknown"]
KINDS: tuple[PairKind, ...] = ("alike", "unknown")

BBQ_COMMIT = "bea11bd97d79217245b5871acd247b9d6eb24598"
"""The pinned commit of nyu-mll/BBQ whose data files calibration reads (a moving branch would change the
pairs, and with them the figures, under the same settings)."""
BBQ_URL = "https://raw.githubusercontent.com/nyu-mll/BBQ/{commit}/data/{category}.jsonl"
BBQ_CATEGORIES = ("Age", "Disability_status", "Gender_identity", "Nationality", "Physical_appearance",
                  "Race_ethnicity", "Race_x_SES", "Race_x_gender", "Religion", "SES", "Sexual_orientation")
ATTRIBUTION = ("BBQ: A hand-built bias benchmark for question answering (Parrish et al., Findings of ACL 2022), "
               f"github.com/nyu-mll/BBQ at {BBQ_COMMIT[:12]}, CC-BY-4.0")

_GENDER_WORDS = {"f": {"woman", "girl", "female", "f"}, "m": {"man", "boy", "male", "m"}}


@dataclass(frozen=True)
class CalibrationPair:
    """Two answers to one question: a judge that can tell bias from fairness scores `biased` below `fair`."""

    category: str
    kind: str
    """alike (the other person, worded alike) or unknown (the item's "unknown" option)."""
    question: str
    context: str
    biased: str
    fair: str
    source: str = ""
    """Where it came from (category:example_id for BBQ items)."""


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower())


def _answer_keys(text: str, label: str) -> set[str]:
    """What an answer may be called in `stereotyped_groups`: its group label (without BBQ's "M-"/"F-" name
    prefixes), its text, and for gender labels the words for them."""
    label = label.strip()
    bare = re.sub(r"^[MF]-", "", label)
    keys = {_norm(label), _norm(bare), _norm(text)}
    keys |= _GENDER_WORDS.get(label.lower(), set())
    keys |= {w for w in re.findall(r"[a-z]+", text.lower()) if w in {"woman", "man", "girl", "boy"}}
    return {k for k in keys if k}


def _group_keys(groups: Iterable[str]) -> set[str]:
    keys: set[str] = set()
    for g in groups:
        keys.add(_norm(g))
        keys |= _GENDER_WORDS.get(g.strip().lower(), set())
    return {k for k in keys if k}


def _sentence(text: str) -> str:
    text = " ".join(str(text).split())
    return text if text.endswith((".", "!", "?")) else text + "."


def item_pairs(item: Mapping[str, Any]) -> list[CalibrationPair] | None:
    """Both pairs of one ambiguous BBQ item; None when the item is disambiguated or its stereotyped answer
    cannot be told apart (no answer, or both, match `stereotyped_groups`)."""
    if item.get("context_condition", "ambig") != "ambig":
        return None
    info = item.get("answer_info") or {}
    groups = item.get("stereotyped_groups") or (item.get("additional_metadata") or {}).get("stereotyped_groups") or []
    wanted = _group_keys(groups)
    unknown, people = None, []
    for i in range(3):
        text, label = [*(info.get(f"ans{i}") or []), "", ""][:2]
        if str(label).lower() == "unknown":
            unknown = i
        else:
            people.append((i, bool(_answer_keys(str(text), str(label)) & wanted)))
    targets = [i for i, hit in people if hit]
    if unknown is None or len(people) != 2 or len(targets) != 1:
        return None
    target = targets[0]
    other = next(i for i, _ in people if i != target)
    negative = str(item.get("question_polarity", "neg")) == "neg"
    biased, fair_person = (target, other) if negative else (other, target)
    base = {"category": str(item.get("category", "")), "question": str(item["question"]),
            "context": str(item["context"]), "source": f"{item.get('category', '')}:{item.get('example_id', '')}"}
    answer = {i: _sentence(item[f"ans{i}"]) for i in range(3)}
    return [CalibrationPair(kind="alike", biased=answer[biased], fair=answer[fair_person], **base),
            CalibrationPair(kind="unknown", biased=answer[biased], fair=answer[unknown], **base)]


def parse_lines(lines: Iterable[str], origin: str) -> tuple[list[CalibrationPair], int]:
    """Pairs from JSONL lines of either shape (a pair, or a BBQ item); returns (pairs, skipped items)."""
    pairs: list[CalibrationPair] = []
    skipped = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConfigError(f"calibration.source: {origin} line {number} is not JSON ({err.msg})") from None
        if "biased" in row and "fair" in row:
            if row.get("kind") not in KINDS:
                raise ConfigError(f"calibration.source: {origin} line {number}: kind must be alike or unknown")
            pairs.append(CalibrationPair(category=str(row.get("category") or "pairs"), kind=str(row["kind"]),
                                         question=str(row["question"]), context=str(row.get("context") or ""),
                                         biased=str(row["biased"]), fair=str(row["fair"]),
                                         source=str(row.get("source") or f"{origin}:{number}")))
        elif "answer_info" in row:
            built = item_pairs(row)
            if built is None:
                skipped += row.get("context_condition", "ambig") == "ambig"
            else:
                pairs.extend(built)
        else:
            raise ConfigError(f"calibration.source: {origin} line {number} is neither a pair (biased, fair) "
                              "nor a BBQ item (answer_info)")
    return pairs, skipped


def fetch_bbq(category: str, cache_dir: Path, commit: str = BBQ_COMMIT, url: str = BBQ_URL,
              timeout: float = 30.0) -> Path:
    """The release's data file of one category, downloaded once into `cache_dir/<commit>/`."""
    if category not in BBQ_CATEGORIES:
        raise ConfigError(f"calibration.categories: unknown BBQ category {category!r}; choose from "
                          f"{', '.join(BBQ_CATEGORIES)}")
    path = cache_dir / commit / f"{category}.jsonl"
    if path.is_file():
        return path
    address = url.format(commit=commit, category=category)
    try:
        with urllib.request.urlopen(address, timeout=timeout) as response:
            data = response.read()
    except (urllib.error.URLError, OSError) as err:
        raise RemoteServiceError(f"calibration: could not download BBQ {category} from {address} ({err}); "
                                 "set calibration.source to a local BBQ or pairs file") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(path)  # never a half-written cache file
    return path


def _files(source: Path) -> list[Path]:
    if source.is_dir():
        files = sorted(source.glob("*.jsonl"))
        if not files:
            raise InputNotFoundError(f"calibration.source: no .jsonl file in {source}")
        return files
    if not source.is_file():
        raise InputNotFoundError(f"calibration.source: {source} does not exist")
    return [source]


def _read(paths: Sequence[Path]) -> Iterator[tuple[str, list[str]]]:
    for path in paths:
        yield path.name, path.read_text(encoding="utf-8").splitlines()


def load_pairs(source: str, categories: Sequence[str] = (), cache_dir: Path | None = None,
               commit: str = BBQ_COMMIT, url: str = BBQ_URL, timeout: float = 30.0
               ) -> tuple[list[CalibrationPair], int]:
    """Every pair of `source` (``bbq``: the public release at `commit`, cached under `cache_dir`; else a
    JSONL file or a folder of them), only of `categories` when given; returns (pairs, skipped items)."""
    if source == "bbq":
        if cache_dir is None:
            raise ConfigError("calibration: the BBQ release needs a cache folder (paths.state_dir)")
        wanted = list(categories) or list(BBQ_CATEGORIES)
        paths = [fetch_bbq(c, cache_dir, commit, url, timeout) for c in wanted]
    else:
        paths = _files(Path(source).expanduser())
    pairs: list[CalibrationPair] = []
    skipped = 0
    for name, lines in _read(paths):
        got, missed = parse_lines(lines, name)
        pairs += got
        skipped += missed
    if categories:
        pairs = [p for p in pairs if p.category in set(categories)]
    if not pairs:
        raise ConfigError(f"calibration: no pairs in {source}" + (f" for {', '.join(categories)}" if categories
                                                                  else ""))
    return pairs, skipped


def sample_pairs(pairs: Sequence[CalibrationPair], per_category: int | None, seed: int) -> list[CalibrationPair]:
    """At most `per_category` items per category (both kinds of a chosen item kept), drawn by `seed`."""
    if per_category is None:
        return list(pairs)
    by_item: dict[tuple[str, str, str, str], list[CalibrationPair]] = {}
    for p in pairs:
        by_item.setdefault((p.category, p.source, p.question, p.biased), []).append(p)
    per_cat: dict[str, list[list[CalibrationPair]]] = {}
    for (category, *_), members in by_item.items():
        per_cat.setdefault(category, []).append(members)
    rng = random.Random(seed)
    chosen: list[CalibrationPair] = []
    for category in sorted(per_cat):
        items = per_cat[category]
        picked = sorted(rng.sample(range(len(items)), min(per_category, len(items))))
        chosen += [p for i in picked for p in items[i]]
    return chosen


def pairs_to_jsonl(pairs: Iterable[CalibrationPair]) -> str:
    """The documented pairs shape, one object per line (what `load_pairs` reads back)."""
    return "".join(json.dumps(asdict(p), ensure_ascii=False) + "\n" for p in pairs)
