"""Typed schema of the `publish` node of configs/publish.yaml: a typo in a key fails at composition."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

DEFAULT_INTENDED_USE = (
    "Answering questions about the documents of the corpus it was tuned on, with passages retrieved from "
    "that corpus put in the prompt (retrieval-augmented generation), as `promptly serve` does."
)
DEFAULT_LIMITS = (
    "It was tuned and evaluated on one corpus: answers about anything else, or without retrieved passages, "
    "are unreliable. It can state things the passages do not support; check its sources before acting on an "
    "answer. The evaluation covers the corpus's held-out questions only."
)


class Action(StrEnum):
    """What `promptly publish` does (the first word after the verb)."""

    push = "push"
    """Publish the chosen run as the repository's next version (v1, v2, ...)."""
    list = "list"
    """Show the recorded versions and which one is active."""
    promote = "promote"
    """Make `publish.version` the active version."""
    rollback = "rollback"
    """Undo the newest promote: the version active before it is active again."""


class RegistryKind(StrEnum):
    """Where versions are pushed."""

    local = "local"
    """A folder under the state dir laid out like a Hub repository (commits, tags): no account needed."""
    hub = "hub"
    """The Hugging Face Hub (or a server answering its API at `hub.endpoint`), with the token in HF_TOKEN."""


@dataclass
class HubConfig:
    """`publish.hub`: the Hugging Face Hub client's settings (the token never comes from config)."""

    endpoint: str = "https://huggingface.co"
    """The Hub's URL; another server answering the Hub API (a mirror, a test server) goes here."""
    token_env: str = "HF_TOKEN"
    """The environment variable holding a write token; a token saved by `hf auth login` is not used."""


@dataclass
class CardConfig:
    """`publish.card`: the model card's free-text parts."""

    license: str | None = None
    """A Hub license id for the front matter (null: none stated; the base model's license applies)."""
    language: list[str] = field(default_factory=lambda: ["en"])
    """Languages of the corpus and answers."""
    intended_use: str = DEFAULT_INTENDED_USE
    """What the model is for."""
    limitations: str = DEFAULT_LIMITS
    """What it must not be relied on for."""


@dataclass
class PublishConfig:
    """The `publish` node: which run, how it is exported, and where it goes."""

    action: Action = Action.push
    """push, list, promote or rollback (`promptly publish promote version=v2` sets it)."""
    run_dir: str | None = None
    """One `promptly train` run folder to publish (or `latest`); null: the best run under runs_dir."""
    runs_dir: str = "logs/train"
    """A folder of runs or one multirun folder, searched for the best run when run_dir is null."""
    metric: str | None = None
    """Rank runs by this: a training metric (val/loss) or an evaluation one (eval/faithfulness); null: the
    runs' optimized_metric."""
    mode: str = "auto"
    """min, max, or auto (the metric's declared direction, promptly/metrics_catalog.py)."""
    repo_id: str = "promptly-rag"
    """The repository: owner/name, or a name alone (the token's user on the Hub, `local` in the registry)."""
    version: str | None = None
    """The version to promote (v1, v2, ...)."""
    registry: RegistryKind = RegistryKind.local
    """local (a folder under the state dir) or hub."""
    registry_dir: str = ".promptly/registry"
    """Root of the local registry: <registry_dir>/<owner>/<name> per repository."""
    merge: bool = False
    """Publish a LoRA merged into its base (full weights), the adapter beside it in adapter/; always so when
    the base cannot be fetched by name (the tiny model, a base converted locally)."""
    private: bool = True
    """Create a missing Hub repository private."""
    promote: bool = False
    """Make the new version the active one right after pushing it."""
    engine_model: str | None = None
    """The name an OpenAI-compatible engine serves this version under (vLLM's --served-model-name),
    recorded with the version: `promptly serve serve.engine=openai` asks the engine for it when the
    version is active (null: serve.openai.model)."""
    only_if_better: bool = False
    """Push only when the run's evaluation beats the active version on `metric` (an eval/ metric, in its
    declared direction); otherwise nothing is pushed and the command still succeeds."""
    hub: HubConfig = field(default_factory=HubConfig)
    card: CardConfig = field(default_factory=CardConfig)
