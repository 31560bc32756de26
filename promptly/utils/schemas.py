"""Registers the structured-config schemas in Hydra's ConfigStore (imported by every entry point).

Group files name their schema first in their defaults list (`- base_data`), the pattern of Hydra's
"static schema with many configs" tutorial, so `data.batch_szie=4` fails listing the valid keys.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from promptly.bias.config import BiasConfig
from promptly.data.config import DataConfig
from promptly.ingest.config import EmbedderConfig, IngestConfig
from promptly.launch import config as launch_config  # noqa: F401  (registers hydra/launcher=kaggle's and launch's)
from promptly.model.config import ModelConfig, PeftConfig, SamplingConfig
from promptly.publish.config import PublishConfig
from promptly.qa.config import QAConfig
from promptly.serving.config import ServeConfig, UiConfig
from promptly.store.config import EmbeddedStoreConfig, PostgresStoreConfig, SupabaseStoreConfig
from promptly.utils import resolvers  # noqa: F401  (registers ${metric_mode:...} and ${metric_direction:...})
from promptly.verb_config import AskConfig, EvalConfig, RunsConfig


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
    cs.store(name="eval_schema", node=EvalConfig)
    cs.store(name="ask_schema", node=AskConfig)
    cs.store(name="bias_schema", node=BiasConfig)
    cs.store(name="runs_schema", node=RunsConfig)
    cs.store(name="qa_schema", node=QAConfig)
    cs.store(name="serve_schema", node=ServeConfig)
    cs.store(name="ui_schema", node=UiConfig)
    cs.store(group="publish", name="base_publish", node=PublishConfig)


register_schemas()
