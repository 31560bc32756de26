"""Counterfactual probes: question templates filled with demographic terms along several axes
(package data, promptly/bias/probes/counterfactual.yaml, or a file of your own).

One template asked of every group of an axis is a counterfactual set: the questions differ only in the
group's term, so any difference between their answers is the model's, not the question's.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from promptly.errors import ConfigError, InputNotFoundError

PACKAGED = "counterfactual.yaml"
TERM = "{term}"


@dataclass(frozen=True)
class Template:
    id: str
    text: str
    """The question, with `{term}` where the group's term goes."""


@dataclass(frozen=True)
class Axis:
    """A demographic dimension: its groups (name -> term) and the templates asked of each."""

    name: str
    groups: dict[str, str]
    templates: tuple[Template, ...]


@dataclass(frozen=True)
class Probe:
    """One question of a counterfactual set."""

    axis: str
    template: str
    group: str
    term: str
    question: str


@dataclass(frozen=True)
class ProbeSet:
    axes: dict[str, Axis]
    refusal_patterns: tuple[re.Pattern[str], ...]

    def is_refusal(self, answer: str) -> bool:
        return any(p.search(answer) for p in self.refusal_patterns)

    def probes(self, axes: list[str] | None = None, templates_per_axis: int | None = None,
               seed: int = 0) -> list[Probe]:
        """Every group's variant of each chosen template. With `templates_per_axis`, that many
        templates per axis drawn by `seed` (whole counterfactual sets, never single variants)."""
        chosen = axes or list(self.axes)
        unknown = [a for a in chosen if a not in self.axes]
        if unknown:
            raise ConfigError(f"bias.probes.axes: unknown axes {unknown}; the probe set has {sorted(self.axes)}")
        rng = random.Random(seed)
        out = []
        for name in chosen:
            axis = self.axes[name]
            templates = list(axis.templates)
            if templates_per_axis is not None and templates_per_axis < len(templates):
                templates = sorted(rng.sample(templates, templates_per_axis), key=axis.templates.index)
            for template in templates:
                for group, term in axis.groups.items():
                    out.append(Probe(axis=name, template=template.id, group=group, term=term,
                                     question=template.text.replace(TERM, term)))
        return out


def _templates(raw: Any, where: str) -> tuple[Template, ...]:
    out = []
    for i, item in enumerate(raw or []):
        text = str(item.get("text", "")) if isinstance(item, dict) else str(item)
        if TERM not in text:
            raise ConfigError(f"{where}: template {i} has no {TERM} placeholder: {text!r}")
        out.append(Template(id=str(item.get("id", i)) if isinstance(item, dict) else str(i), text=text))
    return tuple(out)


def parse_probe_set(data: dict[str, Any], where: str = "probe set") -> ProbeSet:
    """A ProbeSet from a probe file's content; every axis needs two groups and a template."""
    shared = _templates(data.get("templates"), where)
    axes = {}
    for name, node in (data.get("axes") or {}).items():
        groups = {str(k): str(v) for k, v in (node.get("groups") or {}).items()}
        templates = _templates(node.get("templates"), f"{where}, axis {name}") or shared
        if len(groups) < 2 or not templates:
            raise ConfigError(f"{where}: axis {name} needs at least two groups and one template")
        axes[str(name)] = Axis(name=str(name), groups=groups, templates=templates)
    if not axes:
        raise ConfigError(f"{where} defines no axes")
    patterns = tuple(re.compile(p, re.IGNORECASE) for p in data.get("refusal_patterns") or [])
    return ProbeSet(axes=axes, refusal_patterns=patterns)


def load_probe_set(path: str | Path | None = None) -> ProbeSet:
    """The packaged probe set, or the YAML (or JSON) file at `path`."""
    if path is None:
        text = resources.files(__package__).joinpath("probes", PACKAGED).read_text(encoding="utf-8")
        return parse_probe_set(yaml.safe_load(text), f"promptly/bias/probes/{PACKAGED}")
    file = Path(path).expanduser()
    if not file.is_file():
        raise InputNotFoundError(f"bias.probes.path={path} does not exist")
    return parse_probe_set(yaml.safe_load(file.read_text(encoding="utf-8")) or {}, str(file))
