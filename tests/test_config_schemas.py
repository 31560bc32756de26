"""The `ingest`, `store` and `embedder` schemas: a misspelt key, a wrong type or an unknown enum value fails at
composition naming the key; the shipped options still compose and instantiate (nothing connects or loads)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from promptly.ingest.chunking import TokenChunker
from promptly.ingest.config import ChunkerConfig, Cleanup, EmbedderConfig, IngestConfig, RedactConfig
from promptly.ingest.embedding import Embedder
from promptly.ingest.redaction import DEFAULT_ENTITIES, Redactor
from promptly.store.config import EmbeddedStoreConfig, PostgresStoreConfig, SupabaseStoreConfig
from promptly.store.embedded import EmbeddedPostgresStore
from promptly.store.postgres import PostgresStore
from promptly.store.supabase import SupabaseStore

from .conftest import REPO_ROOT, as_job, compose

DATABASE_URL = "postgresql://promptly:pw@127.0.0.1:1/none"
STORES = {"embedded": (EmbeddedStoreConfig, EmbeddedPostgresStore), "postgres": (PostgresStoreConfig, PostgresStore),
          "supabase": (SupabaseStoreConfig, SupabaseStore)}
EMBEDDERS = sorted(p.stem for p in (REPO_ROOT / "configs" / "embedder").glob("*.yaml"))


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings read through ${oc.env:...}; none of them is ever dialled."""
    monkeypatch.setenv("PROMPTLY_DATABASE_URL", DATABASE_URL)
    monkeypatch.setenv("SUPABASE_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("SUPABASE_SERVICE_KEY", "not-a-key")
    monkeypatch.chdir(tmp_path)


def typed_config(name: str, tmp_path: Path, overrides: list[str]) -> DictConfig:
    """The composed config as a verb receives it: typed nodes, interpolations resolved on access."""
    return as_job(compose(name, [f"paths.root_dir={tmp_path}", *overrides]), tmp_path / "run", tmp_path)


# -- misspelt keys, wrong types and values fail at composition ------------------------------------------------

@pytest.mark.parametrize(("overrides", "key", "schema"), [
    (["ingest.chunker.chunk_tokns=5"], "chunk_tokns", "ChunkerConfig"),
    (["ingest.source.pth=x"], "pth", "SourceConfig"),
    (["ingest.cleanupp=full"], "cleanupp", "IngestConfig"),
    (["ingest.qa.split.trian=0.5"], "trian", "SplitConfig"),
    (["ingest.redact.entitis=[EMAIL_ADDRESS]"], "entitis", "RedactConfig"),
    (["ingest=upload", "ingest.redact.enabeld=false"], "enabeld", "RedactConfig"),
    (["store.data_dirr=x"], "data_dirr", "EmbeddedStoreConfig"),
    (["store=postgres", "store.urll=x"], "urll", "PostgresStoreConfig"),
    (["store=supabase", "store.kye=x"], "kye", "SupabaseStoreConfig"),
    (["embedder.dimensions=3"], "dimensions", "EmbedderConfig"),
    (["embedder=nomic", "embedder.query_prefx=q"], "query_prefx", "EmbedderConfig"),
], ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_a_misspelt_key_fails_naming_it(overrides: list[str], key: str, schema: str) -> None:
    with pytest.raises(ConfigCompositionException) as err:
        compose("ingest", overrides)
    assert key in str(err.value)
    assert f"Key '{key}' not in '{schema}'" in str(err.value.__cause__)  # the schema refused it, not struct mode



@pytest.mark.parametrize(("entry", "overrides", "key", "schema"), [
    ("train", ["sed=1"], "sed", "TrainConfig"),
    ("train", ["module.sampels=2"], "sampels", "ModuleConfig"),
    ("ingest", ["task_nam=x"], "task_nam", "IngestEntryConfig"),
    ("db", ["forse=true"], "forse", "DbConfig"),
    ("bias", ["judge.devic=cpu"], "devic", "LocalJudgeConfig"),
    ("bias", ["judge=openai_compatible", "judge.max_retrys=1"], "max_retrys", "OpenAIJudgeConfig"),
    ("bias", ["judge=local_likelihood", "judge.baseline=x"], "baseline", "LikelihoodJudgeConfig"),
    ("bias", ["bias_rubric.criterium=x"], "criterium", "RubricConfig"),
    ("qa", ["qa_generator=local_hf", "qa_generator.max_new_token=5"], "max_new_token", "LocalHFGeneratorConfig"),
    ("qa", ["qa_generator.concurency=2"], "concurency",
     "OpenAICompatibleGeneratorConfig"),
    ("ask", ["retrieval.kk=2"], "kk", "RetrievalSettings"),
], ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_every_entry_and_group_has_a_schema_that_refuses_a_misspelt_key(
        entry: str, overrides: list[str], key: str, schema: str) -> None:
    with pytest.raises(ConfigCompositionException) as err:
        compose(entry, overrides)
    assert f"Key '{key}' not in '{schema}'" in str(err.value.__cause__)


def test_the_retrieval_group_follows_the_model_s_data_settings_unless_set() -> None:
    for entry in ("ask", "eval", "bias", "serve"):
        cfg = compose(entry, ["data.retrieval.k=7", "data.retrieval.mode=text"])
        assert (cfg.retrieval.k, str(cfg.retrieval.mode)) == (7, "text"), entry
        cfg = compose(entry, ["data.retrieval.k=7", "retrieval.k=2"])
        assert cfg.retrieval.k == 2, entry

@pytest.mark.parametrize(("override", "key", "says"), [
    ("ingest.embed_batch_chunks=many", "ingest.embed_batch_chunks", "'many' of type 'str' could not be converted"),
    ("ingest.cleanup=sometimes", "ingest.cleanup", "expected one of [incremental, full, none]"),
    ("ingest.auto_migrate=maybe", "ingest.auto_migrate", "Value 'maybe' is not a valid bool"),
    ("ingest.chunker.overlap_tokens=some", "ingest.chunker.overlap_tokens", "could not be converted to Integer"),
    ("ingest.redact.score_threshold=high", "ingest.redact.score_threshold", "could not be converted to Float"),
    ("ingest.qa.split.seed=x", "ingest.qa.split.seed", "could not be converted to Integer"),
    ("embedder.dimension=big", "embedder.dimension", "could not be converted to Integer"),
    ("store.embedding_dim=abc", "store.embedding_dim", "could not be converted to Integer"),
    ("store.connect_timeout=soon", "store.connect_timeout", "could not be converted to Integer"),
])
def test_a_wrong_type_or_value_fails_naming_the_key(override: str, key: str, says: str) -> None:
    with pytest.raises(ConfigCompositionException, match=key.replace(".", r"\.")) as err:
        compose("ingest", [override])
    assert says in str(err.value.__cause__)


def test_a_group_file_with_a_typo_fails_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's own option file (the schema first in its defaults) is checked like an override."""
    configs = tmp_path / "configs"
    shutil.copytree(REPO_ROOT / "configs", configs, symlinks=True)
    (configs / "store" / "mine.yaml").write_text(
        "defaults:\n  - base_postgres_store\n  - _self_\n\nurl: x\nembedding_dim: 3\nconect_timeout: 5\n")
    (configs / "ingest" / "mine.yaml").write_text("defaults:\n  - default\n  - _self_\n\nchunker:\n  chunk_tokns: 5\n")
    monkeypatch.setenv("PROMPTLY_CONFIG_DIR", str(configs))
    with pytest.raises(ConfigCompositionException, match=r"Key 'conect_timeout' not in 'PostgresStoreConfig'"):
        compose("ingest", ["store=mine"])
    with pytest.raises(ConfigCompositionException, match=r"Key 'chunk_tokns' not in 'ChunkerConfig'"):
        compose("ingest", ["ingest=mine"])


def test_importing_the_entry_decorator_registers_every_schema() -> None:
    """Every verb goes through promptly.verbs.entry: importing it alone registers the groups' schemas."""
    code = ("import promptly.verbs.entry\nfrom hydra.core.config_store import ConfigStore\n"
            "cs = ConfigStore.instance()\n"
            "print({g: sorted(cs.list(g)) for g in ('ingest', 'embedder', 'store', 'data', 'model')})")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    listed = out.stdout
    for name in ("base_ingest.yaml", "base_embedder.yaml", "base_embedded_store.yaml", "base_postgres_store.yaml",
                 "base_supabase_store.yaml", "base_data.yaml", "base_model.yaml"):
        assert name in listed, listed


# -- the shipped options compose, typed, and instantiate ------------------------------------------------------

@pytest.mark.parametrize("option", ["default", "upload"])
def test_ingest_options_compose_typed_and_instantiate(option: str, tmp_path: Path) -> None:
    (tmp_path / "sample_data").mkdir()  # a home with its own data folder (else the packaged corpus is used)
    cfg = typed_config("ingest", tmp_path, [f"ingest={option}"])
    assert OmegaConf.get_type(cfg.ingest) is IngestConfig
    assert OmegaConf.get_type(cfg.ingest.chunker) is ChunkerConfig
    assert OmegaConf.get_type(cfg.ingest.redact) is RedactConfig
    assert cfg.ingest.cleanup is Cleanup.incremental and cfg.ingest.cleanup == "incremental"
    expected = tmp_path / "sample_data" / "docs" if option == "default" else tmp_path / "uploads"
    assert cfg.ingest.source.path == str(expected)
    assert cfg.ingest.embed_batch_chunks == 256 and cfg.ingest.qa.split.train == 0.8

    chunker = instantiate(cfg.ingest.chunker)
    assert isinstance(chunker, TokenChunker) and not chunker.ready  # the tokenizer is bound lazily
    assert (chunker.chunk_tokens, chunker.overlap_tokens, chunker.min_chunk_tokens) == (200, 32, 24)
    redactor = instantiate(cfg.ingest.redact)
    assert isinstance(redactor, Redactor) and redactor.enabled is (option == "upload")
    assert redactor.entities == DEFAULT_ENTITIES and redactor.ner_model == "en_core_web_sm"


@pytest.mark.parametrize("option", EMBEDDERS)
def test_embedder_options_compose_typed_and_instantiate_without_loading(option: str, tmp_path: Path) -> None:
    cfg = typed_config("ingest", tmp_path, [f"embedder={option}"])
    assert OmegaConf.get_type(cfg.embedder) is EmbedderConfig
    embedder = instantiate(cfg.embedder)
    assert isinstance(embedder, Embedder)
    assert (embedder.model_name, embedder.dimension, embedder.query_prefix, embedder.document_prefix) == (
        cfg.embedder.model_name, cfg.embedder.dimension, cfg.embedder.query_prefix, cfg.embedder.document_prefix)
    assert "model" not in vars(embedder)  # cached_property: the weights load on first use only


@pytest.mark.parametrize("option", sorted(STORES))
def test_store_options_compose_typed_and_instantiate_without_connecting(option: str, tmp_path: Path) -> None:
    schema, cls = STORES[option]
    cfg = typed_config("ingest", tmp_path, [f"store={option}", "embedder=nomic"])
    assert OmegaConf.get_type(cfg.store) is schema
    assert cfg.store.embedding_dim == 768  # ${embedder.dimension} through a typed int field
    store = instantiate(cfg.store)
    assert type(store) is cls and store.embedding_dim == 768
    if isinstance(store, EmbeddedPostgresStore):
        assert store.data_dir == (tmp_path / ".promptly" / "pgdata").resolve() and store._server is None
    elif isinstance(store, PostgresStore):
        assert store._url == DATABASE_URL and store._conn is None  # ${oc.env:PROMPTLY_DATABASE_URL,""}
    else:
        assert (store._url, store._key, store._client) == ("http://127.0.0.1:1", "not-a-key", None)


def test_store_options_take_interpolated_and_env_values_for_typed_fields(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTLY_CONNECT_TIMEOUT", "7")
    cfg = typed_config("ingest", tmp_path, ["store=postgres",
                                            "store.connect_timeout=${oc.env:PROMPTLY_CONNECT_TIMEOUT}",
                                            "embedder.dimension=${oc.decode:'512'}"])
    assert (cfg.store.connect_timeout, cfg.store.embedding_dim) == (7, 512)
    assert isinstance(cfg.store.connect_timeout, int)


# -- the cleanup enum through the ingest command, sync and QA loading -----------------------------------------

def test_ingest_with_the_cleanup_enum_from_config(tmp_path: Path, pg_url: str) -> None:
    """`run` gets `ingest.cleanup` as a Cleanup member (not a str): sync and QA loading honour none and full."""
    from promptly.verbs.ingest import run

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "proxy.md").write_text("# Proxy\n\nThe proxy listens on port 8080 and retries three times.\n")
    (docs / "cache.md").write_text("# Cache\n\nThe cache keeps entries for ten minutes before evicting them.\n")
    qa = tmp_path / "qa.jsonl"
    pairs = [{"question": "Which port does the proxy listen on?", "answer": "Port 8080.", "document_id": "proxy.md"},
             {"question": "How long are cache entries kept?", "answer": "Ten minutes.", "document_id": "cache.md"}]
    qa.write_text("".join(json.dumps(p) + "\n" for p in pairs))

    def ingest(cleanup: str):  # type: ignore[no-untyped-def]
        cfg = typed_config("ingest", tmp_path, [
            "store=postgres", f"store.url='{pg_url}'", f"ingest.source.path={docs}", f"ingest.qa.path={qa}",
            "ingest.progress=false", f"ingest.cleanup={cleanup}"])
        assert isinstance(cfg.ingest.cleanup, Cleanup)
        return run(cfg)

    def stored() -> tuple[set[str], int]:
        with PostgresStore(pg_url, embedding_dim=384) as store:
            return set(store.document_hashes()), len(list(store.iter_qa_pairs(origin="file")))

    first = ingest("full")
    assert first.ok and (first.sync.added, first.qa is not None and first.qa.loaded) == (2, 2)
    (docs / "cache.md").unlink()
    qa.write_text(json.dumps(pairs[0]) + "\n")
    kept = ingest("none")
    assert kept.ok and (kept.sync.deleted, kept.sync.unchanged) == (0, 1)
    assert stored() == ({"proxy.md", "cache.md"}, 2)  # none: nothing deleted, QA pairs included
    pruned = ingest("full")
    assert pruned.ok and pruned.sync.deleted == 1
    assert stored() == ({"proxy.md"}, 1)


def test_ask_takes_a_metadata_filter_from_the_command_line() -> None:
    """`filter={document_id: ...}` (the documented example) composes: a typed empty dict would refuse it."""
    assert compose("ask", ["filter={document_id: driftsync/install.md}"]).filter == {
        "document_id": "driftsync/install.md"}
    assert compose("ask").filter is None
