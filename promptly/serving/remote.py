"""Generation delegated to an OpenAI-compatible server (`serve.engine=openai`): vLLM, TGI, SGLang, a
llama.cpp server, Ollama or OpenAI.

Only token generation moves: promptly still retrieves, writes the prompt (chat messages carrying the
numbered sources, so the engine sees the context the citations name), stores conversations, follows the
registry's active version and counts metrics. Each answer is streamed from the engine and its text pieces
handed to the request as they arrive, so streaming passes through. Every wait is bounded
(`serve.openai.connect_timeout_s`, `timeout_s`, `max_retries`): an engine that is down or silent becomes a
503 (502 when it answered with an error) with the reason, and /readyz says 503 while its /models fails.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from omegaconf import DictConfig, OmegaConf

from promptly.data.config import ChatTemplateUse, PromptConfig
from promptly.data.prompts import PromptBuilder, prompt_config
from promptly.errors import ConfigError, RemoteServiceError
from promptly.llm_clients import OpenAIChatClient
from promptly.model.config import SamplingConfig
from promptly.model.loading import LoadedModel
from promptly.retrieval import ContextChunk
from promptly.serving.config import OpenAIEngineSettings
from promptly.serving.metrics import ServerMetrics
from promptly.serving.models import ModelManager, ModelSlot, version_id
from promptly.serving.store_pool import StorePool
from promptly.store.base import ModelVersion

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]
ENGINE_MODEL_KEY = "engine_model"
"""The key of a registry version's config that names the model an engine serves it under."""


class EngineUnavailableError(RemoteServiceError):
    """The engine could not be reached or did not answer in time (503)."""


class EngineFailedError(RemoteServiceError):
    """The engine answered with an error, or with something that is not an answer (502)."""


class _Events(asyncio.Queue[tuple[str, Any]]):
    def put_back(self, event: tuple[str, Any]) -> None:
        """Make `event` the next one got (asyncio.Queue keeps its items in the deque `_queue`)."""
        self._queue.appendleft(event)  # type: ignore[attr-defined]


@dataclass(eq=False)
class RemoteJob:
    """One answer being streamed from the engine. Events, as a local Job's: ("delta", text piece) as they
    arrive, ("usage", the engine's token counts) when it sends them, then ("done", text) or ("error", exc)."""

    loop: asyncio.AbstractEventLoop
    events: _Events = field(default_factory=_Events)
    cancelled: bool = False
    """Set by the request (timeout, client gone): the engine's stream is closed at its next chunk."""

    async def started(self) -> None:
        """Wait for the engine's first event; its failure raises here, before a stream's 200 is sent."""
        event = await self.events.get()
        if event[0] == "error":
            raise event[1]
        self.events.put_back(event)

    def push(self, event: tuple[str, Any]) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the event loop is gone (server shutting down)
            self.cancelled = True


def chat_messages(prompt: PromptConfig, system: str, question: str, chunks: Sequence[ContextChunk],
                  max_context_chars: int) -> tuple[Messages, tuple[ContextChunk, ...]]:
    """The system and user messages of a question with its sources (the prompt's `user_template` and
    `chunk_template`, as a local chat model gets them), and the chunks they show: the lowest-ranked are
    dropped while the context is longer than `max_context_chars` (the first always stays, cut)."""
    builder = PromptBuilder(replace(prompt, chat_template=ChatTemplateUse.never), None)  # only its chunk format
    shown = list(chunks)
    context = builder.format_context(shown)
    while len(shown) > 1 and len(context) > max_context_chars:
        shown.pop()
        context = builder.format_context(shown)
    messages: Messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt.user_template.format(
        context=context[:max_context_chars], question=question)})
    return messages, tuple(shown)


class RemoteEngine:
    """The engine's client, the worker threads that stream answers from it, and its health."""

    def __init__(self, settings: OpenAIEngineSettings, metrics: ServerMetrics, workers: int) -> None:
        import httpx

        self.settings, self.metrics = settings, metrics
        self.where = settings.base_url or "OpenAI"
        shared = OpenAIChatClient(model=settings.model or "(named by the served version)", base_url=settings.base_url,
                                  api_key_env=settings.api_key_env, timeout=settings.timeout_s,
                                  max_retries=settings.max_retries, concurrency=workers, setting="serve.openai")
        try:
            client = shared.client
        except ValueError as err:
            raise ConfigError(str(err)) from None
        self.client = client.with_options(timeout=httpx.Timeout(settings.timeout_s,
                                                                connect=settings.connect_timeout_s))
        self.probe = client.with_options(timeout=httpx.Timeout(min(settings.timeout_s, 5.0),
                                                               connect=settings.connect_timeout_s), max_retries=0)
        self.error: str | None = "the engine has not been checked yet"
        """Why the engine cannot answer (shown by /readyz), or None."""
        self.served_model: str | None = None
        """The model the engine is asked for now (set by the model manager): /models must list it."""
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="promptly-engine")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="promptly-engine-health", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- health --------------------------------------------------------------------------------------------
    def _watch(self) -> None:
        while True:
            self.error = self.check()
            if self._stop.wait(self.settings.health_poll_s):
                return

    def check(self) -> str | None:
        """Why the engine cannot answer now (its /models fails, or does not list the served model), or None."""
        import openai

        try:
            listed = [m.id for m in self.probe.models.list()]
        except openai.APIStatusError as err:
            return f"the engine at {self.where} answered {err.status_code} to GET /models (serve.openai): {_says(err)}"
        except Exception as err:
            return f"the engine at {self.where} is unreachable (serve.openai.base_url): {type(err).__name__}: {err}"
        model = self.served_model
        if model and listed and model not in listed:
            return (f"the engine at {self.where} does not serve {model!r} (serve.openai.model or the version's "
                    f"engine_model); it serves: {', '.join(listed[:5])}")
        return None

    # -- generation ----------------------------------------------------------------------------------------
    def submit(self, model: str, messages: Messages, sampling: SamplingConfig) -> RemoteJob:
        job = RemoteJob(loop=asyncio.get_running_loop())
        self._pool.submit(self._stream, job, model, messages, sampling)
        return job

    def _stream(self, job: RemoteJob, model: str, messages: Messages, sampling: SamplingConfig) -> None:
        started, pieces, chunks = time.monotonic(), [], 0
        kwargs: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": sampling.max_new_tokens,
                                  "stream": True, "stream_options": {"include_usage": True}}
        if sampling.do_sample:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p)
        else:
            kwargs.update(temperature=0.0)
        try:
            stream = self.client.chat.completions.create(**kwargs)
            with stream:
                for chunk in stream:
                    if job.cancelled:
                        return
                    if getattr(chunk, "usage", None) is not None:
                        job.push(("usage", {"prompt_tokens": chunk.usage.prompt_tokens,
                                            "completion_tokens": chunk.usage.completion_tokens}))
                    for choice in chunk.choices:
                        if choice.delta.content:
                            chunks += 1
                            pieces.append(choice.delta.content)
                            job.push(("delta", choice.delta.content))
        except Exception as err:
            failure = self._failure(err)
            if isinstance(failure, EngineUnavailableError):
                self.error = str(failure)  # /readyz says so now, not at the next health check
            log.error("%s", failure)
            job.push(("error", failure))
            return
        finally:
            self.metrics.generation_seconds.observe(time.monotonic() - started)
            self.metrics.tokens.inc(chunks)
        self.error = None
        job.push(("done", "".join(pieces)))

    def _failure(self, err: Exception) -> RemoteServiceError:
        import httpx
        import openai

        if isinstance(err, openai.APIStatusError):
            kind = EngineUnavailableError if err.status_code in (429, 503) else EngineFailedError
            return kind(f"the engine at {self.where} answered {err.status_code}: {_says(err)}")
        if isinstance(err, openai.APITimeoutError | httpx.TimeoutException):
            return EngineUnavailableError(f"the engine at {self.where} did not answer within serve.openai.timeout_s="
                                          f"{self.settings.timeout_s:g} s")
        if isinstance(err, openai.APIConnectionError | httpx.TransportError):
            return EngineUnavailableError(f"the engine at {self.where} is unreachable (serve.openai.base_url): {err}")
        return EngineFailedError(f"the engine at {self.where} sent no usable answer: {type(err).__name__}: {err}")


def _says(err: Any) -> str:
    body = getattr(err, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and inner.get("message"):
            return str(inner["message"])[:300]
    return str(getattr(err, "message", err))[:300]


class RemoteModelManager(ModelManager):
    """What is served with engine=openai: the registry's active version (its `engine_model`, else
    serve.openai.model), or serve.openai.model itself; nothing is loaded, so a promotion switches at the
    next poll. The prompt is the version's training prompt, else `data.prompt`."""

    def __init__(self, cfg: DictConfig, pool: StorePool, follow: bool, poll_s: float, metrics: ServerMetrics,
                 engine: RemoteEngine) -> None:
        super().__init__(cfg, pool, follow, poll_s, metrics)
        self.engine = engine

    def has_configured(self) -> bool:
        return bool(self.engine.settings.model)

    def nothing_to_serve(self) -> str:
        return ("no model to serve: serve.openai.model is empty and the store has no active model version "
                "(`promptly publish promote`)")

    def load_configured(self) -> ModelSlot:
        model = self.engine.settings.model
        return self._slot(model, model, None, self.cfg.get("data", {}).get("prompt"))

    def load_version(self, version: ModelVersion) -> ModelSlot:
        model = str(version.config.get(ENGINE_MODEL_KEY) or self.engine.settings.model or "")
        if not model:
            raise ConfigError(f"active version {version_id(version)} names no {ENGINE_MODEL_KEY} and "
                              "serve.openai.model is empty: publish it with publish.engine_model=NAME or set "
                              "serve.openai.model")
        trained = ((version.config.get("training") or {}).get("data") or {}).get("prompt")
        return self._slot(version_id(version), model, version, trained or self.cfg.get("data", {}).get("prompt"))

    def _slot(self, model_id: str, engine_model: str, version: ModelVersion | None, prompt: Any) -> ModelSlot:
        if isinstance(prompt, DictConfig):
            prompt = OmegaConf.to_container(prompt, resolve=True)
        loaded = LoadedModel(model=None, tokenizer=None, name=model_id, origin=f"{engine_model} at {self.engine.where}",
                             checkpoint=None, prompt=prompt_config(prompt), max_length=0)
        self.engine.served_model = engine_model
        return ModelSlot(loaded, model_id, version, engine_model=engine_model)
