"""Typed schemas of `promptly serve` and `promptly ui` (registered in promptly/verbs/schemas.py), so a
typo such as `serve.prot=8000` fails at composition listing the valid keys.

Imported by every verb (through the schema registry): nothing here imports FastAPI, torch or Streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from promptly.errors import ConfigError
from promptly.settings import ModelChoice, RetrievalSettings, VerbGroups

DEFAULT_STYLES = {
    "short": "Answer in one or two sentences, using only the given context. Cite sources as [n].",
    "detailed": "Answer thoroughly, step by step where it helps, using only the given context. "
                "Cite each fact's source as [n].",
}


ENGINES = ("local", "openai")


@dataclass
class OpenAIEngineSettings:
    """`serve.openai.*`: the OpenAI-compatible server that generates answers with `serve.engine=openai`
    (vLLM, TGI, SGLang, a llama.cpp server, Ollama, OpenAI). Requests go through promptly/llm_clients.py's
    client (the official `openai` library: retries with exponential backoff and jitter)."""

    base_url: str | None = None
    """The engine's API root, e.g. http://vllm:8000/v1 (null: OpenAI itself, which needs the key)."""
    model: str = ""
    """The model name the engine serves (vLLM's --served-model-name); the served registry version's
    `engine_model` (recorded by `promptly publish publish.engine_model=...`) takes its place."""
    api_key_env: str = "PROMPTLY_ENGINE_API_KEY"
    """Environment variable holding the engine's key (a local engine without a key gets a placeholder);
    the key itself never appears in a config."""
    connect_timeout_s: float = 3.0
    """Longest wait to connect to the engine."""
    timeout_s: float = 30.0
    """Longest wait for the engine's first byte, and between two streamed chunks."""
    max_retries: int = 2
    """Retries of a failed connect, a timeout, a 429 or a 5xx, with backoff, before anything is streamed."""
    health_poll_s: float = 5.0
    """How often the engine's /models is checked for /readyz (a failed answer also marks it down at once)."""
    max_context_chars: int = 16_000
    """Retrieved context longer than this many characters loses its lowest-ranked chunks (the engine's
    tokenizer is not here; ~4 characters a token in English)."""

    def __post_init__(self) -> None:
        if min(self.connect_timeout_s, self.timeout_s, self.health_poll_s) <= 0:
            raise ConfigError("serve.openai.connect_timeout_s, timeout_s and health_poll_s must be > 0")
        if self.max_retries < 0 or self.max_context_chars < 1:
            raise ConfigError("serve.openai.max_retries must be >= 0 and serve.openai.max_context_chars >= 1")


@dataclass
class ServeSettings:
    """`serve.*`: the HTTP server, its batching and its limits."""

    host: str = "127.0.0.1"
    """Interface to listen on (0.0.0.0 in a container)."""
    port: int = 8000
    """Port to listen on (0: any free port, printed at start)."""
    api_key_env: str = "PROMPTLY_API_KEY"
    """Environment variable holding the API key; when it is set, every /v1 route needs `Authorization: Bearer`."""
    model_alias: str = "promptly"
    """A model name that always means the version being served (OpenAI clients must name a model)."""
    follow_active: bool | None = None
    """Serve the store's active model version and switch when another is promoted (null: when no
    model, run_dir or model_dir is given)."""
    poll_seconds: float = 5.0
    """How often the active version is checked."""
    max_batch_size: int = 16
    """Most sequences decoded together: a request joins the running batch at the next step while fewer
    run, and waits in the queue for a row otherwise (continuous batching)."""
    max_prefill_tokens: int = 4096
    """Prompt tokens prefilled in one turn while others are mid-answer (a newcomer alone always is), so
    a wave of long prompts delays the running answers by one bounded prefill at a time."""
    max_pending: int = 64
    """Requests admitted at once (retrieving, queued or generating); more are answered 429 with Retry-After."""
    request_timeout_s: float = 60.0
    """A request must START generating within this (from its arrival): one that the recent token rate says
    would wait longer is refused with 429 and Retry-After, as is one that has not started when it runs
    out; a started answer is always finished."""
    max_question_tokens: int = 512
    """Longest question accepted, in the model's tokens (longer: 400)."""
    max_new_tokens_limit: int = 512
    """Largest `max_tokens` a request may ask for (larger: 400)."""
    store_pool_size: int = 4
    """Store connections shared by the requests (each request borrows one; none is used by two at once)."""
    uploads_dir: str = "uploads"
    """Where uploaded files are kept, one folder per owner (ingested with ingest=upload)."""
    max_upload_bytes: int = 5_000_000
    """Larger uploads are refused (413)."""
    upload_workers: int = 2
    """Threads ingesting uploads; each serves the owners in turn and runs one job per owner at a time, so
    one user's large file never holds more than one worker while another user's file waits."""
    upload_timeout_s: float = 1800.0
    """An upload still ingesting after this long fails (at the next batch of chunks), storing nothing."""
    upload_batch_chunks: int = 32
    """Chunks of an upload embedded per step: progress, cancelling and the time budget act between steps,
    and running uploads take turns on the embedder step by step."""
    max_upload_chunks: int = 10_000
    """An upload that splits into more chunks fails with the reason before anything is embedded."""
    max_queued_uploads: int = 16
    """Uploads one user may have queued or running; more are answered 429 until one ends."""
    redact_conversations: bool = True
    """Replace personal data in questions and answers (the `ingest.redact` recognizers) before they are
    stored in `conversations`, so conversations liked for training never carry it."""
    styles: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_STYLES))
    """Answer styles a request may name (`style`), each a system prompt; `default` is the model's own."""
    check: bool = False
    """Start, wait until /readyz answers 200, print it and exit (for smoke tests and CI)."""
    engine: str = "local"
    """Who generates the answers: `local` (the model loaded in this process) or `openai` (the server in
    `serve.openai`; no model is loaded here). Retrieval, prompts, citations, conversations, versions and
    metrics stay in promptly either way."""
    openai: OpenAIEngineSettings = field(default_factory=OpenAIEngineSettings)
    """The OpenAI-compatible engine used with engine=openai."""

    def __post_init__(self) -> None:
        if isinstance(self.openai, dict):  # built from a plain container (settings_of)
            self.openai = OpenAIEngineSettings(**self.openai)
        if self.engine not in ENGINES:
            raise ConfigError(f"serve.engine={self.engine!r}: choose one of {', '.join(ENGINES)}")
        if self.max_batch_size < 1 or self.max_pending < 1 or self.store_pool_size < 1:
            raise ConfigError("serve.max_batch_size, serve.max_pending and serve.store_pool_size must be >= 1")
        if self.max_prefill_tokens < 1 or self.request_timeout_s <= 0 or self.poll_seconds <= 0:
            raise ConfigError("serve.max_prefill_tokens must be >= 1, serve.request_timeout_s and poll_seconds > 0")
        if min(self.upload_workers, self.upload_batch_chunks, self.max_upload_chunks, self.max_queued_uploads) < 1:
            raise ConfigError("serve.upload_workers, upload_batch_chunks, max_upload_chunks and max_queued_uploads "
                              "must be >= 1")
        if self.upload_timeout_s <= 0:
            raise ConfigError("serve.upload_timeout_s must be > 0")


@dataclass
class ServeConfig(VerbGroups, ModelChoice):
    """`promptly serve`: the OpenAI-compatible RAG API."""

    task_name: str = "serve"
    serve: ServeSettings = field(default_factory=ServeSettings)
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    ingest: Any = None
    """The upload ingestion (`ingest=upload`) that POST /v1/uploads runs."""


@dataclass
class UiSettings:
    """`ui.*`: the Streamlit app and the API it talks to."""

    api_url: str = "http://127.0.0.1:8000"
    """The promptly API (the UI talks to it over HTTP only)."""
    api_key_env: str = "PROMPTLY_API_KEY"
    """Environment variable with the API key the UI sends, if the API needs one."""
    host: str = "127.0.0.1"
    port: int = 8501
    k: int = 3
    """Chunks retrieved per question by default (the sidebar changes it)."""
    timeout_s: float = 120.0
    """How long the UI waits for an answer."""
    check: bool = False
    """Start Streamlit, wait until it answers its health check, print it and exit (smoke tests)."""


@dataclass
class UiConfig:
    """`promptly ui`: the Streamlit chat, upload and evaluation pages."""

    task_name: str = "ui"
    paths: Any = None
    ui: UiSettings = field(default_factory=UiSettings)


def resolved_copy(cfg: DictConfig) -> DictConfig:
    """A plain, resolved copy: what background threads use (they have no Hydra state to resolve with)."""
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    assert isinstance(out, DictConfig)
    return out
