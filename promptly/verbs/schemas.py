"""The verbs' own entry-config schemas (eval, ask, runs) and the registration of every structured-config
schema in Hydra's ConfigStore (imported by every entry point), so `promptly eval splt=test` fails at
composition naming the valid keys.

Group files name their schema first in their defaults list (`- base_data`), the pattern of Hydra's
"static schema with many configs" tutorial, so `data.batch_szie=4` fails listing the valid keys. Names:
a group's schema is `base_<what>` (stored in the group), an entry config's is `<verb>_schema`; every
entry config lists its schema first and `_self_` last, except train.yaml, whose `_self_` comes right
after the schema so that experiments (`# @package _global_`) override its run settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore

from promptly.bias.config import (
    BiasConfig,
    LikelihoodJudgeConfig,
    LocalJudgeConfig,
    OpenAIJudgeConfig,
    PairwiseJudgeConfig,
    RubricConfig,
)
from promptly.data.config import DataConfig
from promptly.evaluation.config import MetricConfig, QuestionFileConfig
from promptly.ingest.config import EmbedderConfig, IngestConfig
from promptly.launch import config as launch_config  # noqa: F401  (registers hydra/launcher=kaggle's and launch's)
from promptly.model.config import ModelConfig, ModuleConfig, PeftConfig, SamplingConfig
from promptly.publish.config import PublishConfig
from promptly.qa.config import LocalHFGeneratorConfig, OpenAICompatibleGeneratorConfig, QAConfig
from promptly.serving.config import ServeConfig, UiConfig
from promptly.settings import ModelChoice, RetrievalSettings, VerbGroups
from promptly.store.config import EmbeddedStoreConfig, PostgresStoreConfig, SupabaseStoreConfig
from promptly.utils import resolvers  # noqa: F401  (registers ${metric_mode:...} and ${metric_direction:...})


class SplitName(StrEnum):
    train = "train"
    validation = "validation"
    test = "test"


class OutputFormat(StrEnum):
    text = "text"
    """The answer, numbered citations and the time taken, for people."""
    json = "json"
    """One JSON object on one line (logs go to stderr), for scripts."""


@dataclass
class EvalConfig(VerbGroups, ModelChoice):
    """`promptly eval`: answer a split's questions with retrieval and score them."""

    task_name: str = "eval"
    split: SplitName = SplitName.test
    """The split to answer (fixed per document at ingest)."""
    limit: int | None = None
    """At most this many questions."""
    compare: list[str] = field(default_factory=list)
    """Eval run folders (or report.json files) to put side by side instead of evaluating."""
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    metrics: MetricConfig = field(default_factory=MetricConfig)
    """Metric settings (see docs/metrics.md)."""
    questions: QuestionFileConfig = field(default_factory=QuestionFileConfig)
    """A question file of your own (questions and expected facts) to answer instead of the split."""


@dataclass
class AskConfig(VerbGroups, ModelChoice):
    """`promptly ask "QUESTION"`: one answer with retrieved context and numbered citations."""

    task_name: str = "ask"
    question: str = ""
    """The question (the CLI's first positional argument)."""
    format: OutputFormat = OutputFormat.text
    """text or json."""
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    filter: Any = None
    """Chunk metadata the sources must match, e.g. {document_id: driftsync/install.md}."""


class SortMode(StrEnum):
    auto = "auto"
    """The metric's declared direction (promptly/metrics_catalog.py)."""
    min = "min"
    max = "max"


@dataclass
class RunsConfig:
    """`promptly runs`: the runs of a folder (or one multirun) with their overrides and final metrics."""

    paths: Any = None
    task_name: str = "runs"
    dir: str = "logs/train"
    """A folder of runs, a multirun folder, or one run."""
    sort_by: str | None = None
    """A metric name (e.g. val/loss); null: the runs' optimized_metric."""
    mode: SortMode = SortMode.auto
    """min, max, or auto."""
    metrics: list[str] = field(default_factory=lambda: ["val/loss", "val/ppl", "val/sample_exact_match",
                                                        "train/loss"])
    """Metric columns (metrics no run has are left out)."""
    limit: int | None = None
    """Show at most this many rows."""


@dataclass
class TrainConfig:
    """`promptly train`: the groups a run composes (each validated by its own schema) and the run's switches."""

    paths: Any = None
    store: Any = None
    embedder: Any = None
    data: Any = None
    model: Any = None
    module: Any = None
    optim: Any = None
    scheduler: Any = None
    callbacks: Any = None
    logger: Any = None
    trainer: Any = None
    task_name: str = "train"
    """Names the run folder (logs/<task_name>/...)."""
    tags: list[str] = field(default_factory=list)
    """Extra W&B tags (the experiment, model, task and sweep are added automatically)."""
    seed: int = 42
    """Seeds everything (sampling order, dropout); the tiny model's init has its own seed."""
    train: bool = True
    """Run trainer.fit."""
    test: bool = False
    """Then evaluate the best checkpoint on the test split."""
    ckpt_path: str | None = None
    """Resume a crashed run: ckpt_path=<run dir>/checkpoints/last.ckpt."""
    optimized_metric: str = "val/loss"
    """What the entry point returns to sweepers (Optuna minimises it)."""
    verbose: bool = False
    """Print Lightning's model summary and W&B's end-of-run summary too."""
    export: bool = True
    """Save the final model (adapters or weights) + tokenizer, HF format, under <run>/model."""


@dataclass
class IngestEntryConfig:
    """`promptly ingest`: documents -> chunks -> embeddings -> store (the `ingest` group has its own schema)."""

    paths: Any = None
    store: Any = None
    embedder: Any = None
    ingest: Any = None
    task_name: str = "ingest"
    """Names the run folder (logs/<task_name>/...)."""


class DbAction(StrEnum):
    migrate = "migrate"
    """Apply the SQL migrations the store lacks."""
    status = "status"
    """Counts of documents, chunks, QA pairs, conversations; applied migrations."""
    sql = "sql"
    """Print the schema for the configured embedding dimension (starts no database)."""
    stop = "stop"
    """Stop the embedded Postgres server."""


@dataclass
class DbConfig:
    """`promptly db migrate | status | sql | stop`."""

    paths: Any = None
    store: Any = None
    embedder: Any = None
    task_name: str = "db"
    action: DbAction = DbAction.status
    """The sub-command (the CLI's first argument)."""
    force: bool = False
    """db stop: stop the embedded server even while other processes use it."""


def register_schemas() -> None:
    """Idempotent: storing a node again replaces it."""
    cs = ConfigStore.instance()
    cs.store(group="data", name="base_data", node=DataConfig)
    cs.store(group="model", name="base_model", node=ModelConfig)
    cs.store(group="model/peft", name="base_peft", node=PeftConfig)
    cs.store(group="ingest", name="base_ingest", node=IngestConfig)
    cs.store(group="embedder", name="base_embedder", node=EmbedderConfig)
    cs.store(group="store", name="base_embedded_store", node=EmbeddedStoreConfig)
    cs.store(group="store", name="base_postgres_store", node=PostgresStoreConfig)
    cs.store(group="store", name="base_supabase_store", node=SupabaseStoreConfig)
    cs.store(group="generation", name="base_generation", node=SamplingConfig)
    cs.store(group="retrieval", name="base_retrieval", node=RetrievalSettings)
    cs.store(group="module", name="base_module", node=ModuleConfig)
    cs.store(group="bias_rubric", name="base_bias_rubric", node=RubricConfig)
    cs.store(group="judge", name="base_local_judge", node=LocalJudgeConfig)
    cs.store(group="judge", name="base_pairwise_judge", node=PairwiseJudgeConfig)
    cs.store(group="judge", name="base_likelihood_judge", node=LikelihoodJudgeConfig)
    cs.store(group="judge", name="base_openai_judge", node=OpenAIJudgeConfig)
    cs.store(group="qa_generator", name="base_local_hf_generator", node=LocalHFGeneratorConfig)
    cs.store(group="qa_generator", name="base_openai_generator", node=OpenAICompatibleGeneratorConfig)
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="ingest_schema", node=IngestEntryConfig)
    cs.store(name="db_schema", node=DbConfig)
    cs.store(name="eval_schema", node=EvalConfig)
    cs.store(name="ask_schema", node=AskConfig)
    cs.store(name="bias_schema", node=BiasConfig)
    cs.store(name="runs_schema", node=RunsConfig)
    cs.store(name="qa_schema", node=QAConfig)
    cs.store(name="serve_schema", node=ServeConfig)
    cs.store(name="ui_schema", node=UiConfig)
    cs.store(group="publish", name="base_publish", node=PublishConfig)


register_schemas()
