"""What the API does, without HTTP: admission, retrieval, prompts, batched generation, conversations.

The API (api.py and its routes/) turns requests into calls here and results into OpenAI-shaped JSON; tests and the
benchmark can drive the same objects. Retrieval and prompt rendering go through the one answer path
(`Retriever`, `Answerer.render`), generation through the batcher's `generate`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from promptly.answering import Answerer, PreparedQuestion, with_evidence
from promptly.errors import ConfigError, PromptlyError
from promptly.evidence import EvidencedAnswer, EvidencePlan, plan
from promptly.ingest.redaction import Redactor
from promptly.model.config import SamplingConfig
from promptly.retrieval import ContextChunk, Retriever
from promptly.serving.batching import ContinuousBatcher, Job
from promptly.serving.compute import on_compute_thread
from promptly.serving.config import ServeSettings
from promptly.serving.metrics import ServerMetrics
from promptly.serving.models import ModelManager, ModelSlot, explicit_model
from promptly.serving.remote import RemoteEngine, RemoteJob, RemoteModelManager, chat_messages
from promptly.serving.store_pool import StorePool
from promptly.settings import AnswerStyle, EvidenceSettings
from promptly.store.base import ANONYMOUS

log = logging.getLogger(__name__)

OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
UPLOADS_PREFIX = "uploads/"


class OverloadedError(PromptlyError):
    """More requests than serve.max_pending, or a predicted (or actual) start later than
    serve.request_timeout_s: answered 429 with Retry-After."""

    def __init__(self, retry_after_s: int, why: str = "") -> None:
        super().__init__(f"the server is busy{why}: try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


def check_owner(user: str | None) -> str | None:
    """A user name safe as a folder and id part, or None; anything else is the client's error."""
    if user is None or user == "":
        return None
    if not OWNER.fullmatch(user):
        raise ConfigError("`user` must be 1-64 letters, digits or _.@- (it names the uploads' owner)")
    return user


def visible_to(chunk: ContextChunk, owner: str | None) -> bool:
    """Uploads (ids `uploads/<owner>/...`) are seen only by their owner; everything else by everyone."""
    doc = str(chunk["document_id"])
    if not doc.startswith(UPLOADS_PREFIX):
        return True
    return owner is not None and doc.startswith(f"{UPLOADS_PREFIX}{owner}/")


@dataclass(frozen=True)
class Prepared:
    """A question ready for generation: the slot that rendered it, its prompt and its sources."""

    slot: ModelSlot
    question: PreparedQuestion
    sampling: SamplingConfig
    messages: list[dict[str, str]] | None = None
    """The chat messages sent to the engine (serve.engine=openai); None when generated here."""


class Engine:
    """The served model(s), the store pool, the embedder and the batcher, started together."""

    def __init__(self, cfg: DictConfig, settings: ServeSettings, metrics: ServerMetrics | None = None,
                 redactor: Redactor | None = None) -> None:
        self.cfg, self.settings = cfg, settings
        self.redactor = redactor
        """Applied to questions and answers before they are stored (serve.redact_conversations)."""
        self.metrics = metrics or ServerMetrics()
        self.pool = StorePool(lambda: instantiate(cfg.store), settings.store_pool_size)
        self.embedder: Any = on_compute_thread(instantiate, cfg.embedder)
        self.sampling = SamplingConfig(**OmegaConf.to_container(cfg.generation, resolve=True))  # type: ignore[arg-type]
        self.k, self.mode = int(cfg.retrieval.k), str(cfg.retrieval.mode)
        self.evidence = EvidenceSettings(**OmegaConf.to_container(cfg.evidence, resolve=True)  # type: ignore[arg-type]
                                         ) if cfg.get("evidence") is not None else EvidenceSettings()
        """Supporting sentences, markers, abstention and the default answer style (evidence.*)."""
        follow = settings.follow_active if settings.follow_active is not None else not explicit_model(cfg)
        self.remote = (RemoteEngine(settings.openai, self.metrics, settings.max_pending)
                       if settings.engine == "openai" else None)
        """The OpenAI-compatible engine that generates instead of a local model (serve.engine=openai)."""
        self.models = (RemoteModelManager(cfg, self.pool, follow, settings.poll_seconds, self.metrics, self.remote)
                       if self.remote else ModelManager(cfg, self.pool, follow, settings.poll_seconds, self.metrics))
        self.batcher = ContinuousBatcher(settings.max_batch_size, self.metrics, settings.max_prefill_tokens)
        self.store_error: str | None = "the store has not been checked yet"
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._store_thread = threading.Thread(target=self._check_store, name="promptly-store-check", daemon=True)

    # -- life cycle ----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Load in the background: /healthz answers at once, /readyz once model and store are ready."""
        self._store_thread.start()
        if self.remote:
            self.remote.start()
        self.models.start()
        self.batcher.start()

    def stop(self) -> None:
        if self.remote:
            self.remote.stop()
        self.models.stop()
        self.batcher.stop()
        self.pool.close()

    def _check_store(self) -> None:
        try:
            with self.pool.store() as store:
                status = store.status()
            if not status.applied_migrations:
                self.store_error = "the store has no schema: run `promptly db migrate` or `promptly ingest`"
                return
            if status.chunks == 0:
                log.warning("the store holds no chunks: answers will have no sources (run `promptly ingest`)")
            on_compute_thread(self.embedder.embed_queries, ["warm up"])
        except Exception as err:
            self.store_error = f"the store is not reachable: {err}"
            log.error("%s", self.store_error)
            return
        if self.redactor is not None:  # loaded before ready, so no answer waits for it
            try:
                self.redactor.redact("warm up")
            except Exception as err:
                log.error("PII redaction of conversations cannot load (serve.redact_conversations): %s", err)
        self.store_error = None

    def not_ready(self) -> str | None:
        """Why the server cannot answer yet, or None."""
        if self.store_error:
            return self.store_error
        if self.models.current is None:
            return self.models.error or "the model is loading"
        return self.remote.error if self.remote else None

    def slot(self) -> ModelSlot:
        current = self.models.current
        if current is None:
            raise ConfigError(self.not_ready() or "the model is loading")
        return current

    # -- admission -----------------------------------------------------------------------------------------
    @contextmanager
    def admit(self) -> Iterator[None]:
        """Count a request in for its whole life. Refused at once beyond serve.max_pending, or when the
        requests ahead of it would keep it from starting within serve.request_timeout_s (from the recent
        token rate): a refusal costs the client nothing, a request accepted and then timed out does."""
        with self._pending_lock:
            if self._pending >= self.settings.max_pending:
                self.metrics.rejected.labels("overloaded").inc()
                raise OverloadedError(self.retry_after())
            wait = self.queue_wait_s(self._pending + 1)
            self.metrics.queue_wait_estimate.set(wait)
            if wait > self.settings.request_timeout_s:
                self.metrics.rejected.labels("queue_wait").inc()
                raise OverloadedError(self.retry_after(), f" (it would start in ~{wait:.0f} s, after "
                                      f"serve.request_timeout_s={self.settings.request_timeout_s:g} s)")
            self._pending += 1
            self.metrics.pending.set(self._pending)
        try:
            yield
        finally:
            with self._pending_lock:
                self._pending -= 1
                self.metrics.pending.set(self._pending)

    def queue_wait_s(self, requests: int) -> float:
        """Predicted seconds before the last of `requests` admitted requests gets a row in the batch: the
        ones beyond serve.max_batch_size must first see as many others finish."""
        return self.batcher.estimate_wait_s(requests - self.settings.max_batch_size)

    def retry_after(self) -> int:
        """Seconds until a new request would likely start within serve.request_timeout_s again."""
        wait = self.queue_wait_s(self._pending + 1) - self.settings.request_timeout_s / 2
        return max(1, math.ceil(wait))

    # -- retrieval and prompts -----------------------------------------------------------------------------
    def retrieve(self, query: str, k: int | None = None, filter: dict[str, Any] | None = None,
                 owner: str | None = None) -> list[ContextChunk]:
        """The top-k chunks the requester may see: the search itself leaves other owners' chunks out before
        ranking (match_chunks' `viewer`, migration 0012), so k remain whatever anyone uploaded."""
        k = k or self.k
        started = time.monotonic()
        with self.pool.store() as store:
            found = Retriever(store, _ComputeEmbedder(self.embedder), k=k, mode=self.mode).search(
                [query], filter=filter, k=k, viewer=owner or ANONYMOUS)[0]
        self.metrics.retrieval_seconds.observe(time.monotonic() - started)
        visible = [c for c in found if visible_to(c, owner)]
        if len(visible) < len(found):  # an upload stored without metadata.owner: never shown, but said
            log.warning("left out %d chunk(s) of other users' uploads that carry no metadata.owner",
                        len(found) - len(visible))
        return visible

    def sampling_for(self, max_tokens: int | None, temperature: float | None, top_p: float | None) -> SamplingConfig:
        sampling = self.sampling
        if max_tokens is not None:
            if not 1 <= max_tokens <= self.settings.max_new_tokens_limit:
                raise ConfigError(f"max_tokens must be between 1 and {self.settings.max_new_tokens_limit}")
            sampling = replace(sampling, max_new_tokens=max_tokens)
        if temperature is not None:
            sampling = (replace(sampling, do_sample=False) if temperature == 0 else
                        replace(sampling, do_sample=True, temperature=temperature, top_p=top_p or sampling.top_p))
        return sampling

    def system_prompt(self, slot: ModelSlot, style: str | None, instruction: str | None) -> str:
        """A custom instruction, else the named style's system prompt, else the model's own."""
        if instruction and instruction.strip():
            return instruction.strip()
        if style in (None, "", "default"):
            return slot.loaded.prompt.system
        if style not in self.settings.styles:
            raise ConfigError(f"unknown style {style!r}: choose default, {', '.join(self.settings.styles)} "
                              "or give an instruction")
        return self.settings.styles[style]

    def question_tokens(self, slot: ModelSlot, question: str) -> int:
        """In the served model's tokens; with engine=openai (no tokenizer here) in the embedder's."""
        tokenizer = slot.loaded.tokenizer if slot.loaded.tokenizer is not None else self.embedder.hf_tokenizer
        return len(tokenizer(question, add_special_tokens=False)["input_ids"])

    def prepare(self, slot: ModelSlot, question: str, chunks: list[ContextChunk], system: str,
                sampling: SamplingConfig) -> Prepared:
        """The prompt of a question with its sources, under the chosen system prompt."""
        tokens = self.question_tokens(slot, question)
        if tokens > self.settings.max_question_tokens:
            raise ConfigError(f"the question has {tokens} tokens; at most {self.settings.max_question_tokens} "
                              "are accepted (serve.max_question_tokens)")
        if slot.engine_model is not None:
            assert self.remote is not None
            messages, shown = chat_messages(slot.loaded.prompt, system, question, chunks,
                                            self.remote.settings.max_context_chars)
            return Prepared(slot, PreparedQuestion(question, shown, [], 0), sampling, messages)
        loaded = replace(slot.loaded, prompt=replace(slot.loaded.prompt, system=system))
        # render() only: the context was retrieved above, with a pooled store, so the answerer needs none
        answerer = Answerer(loaded, None, sampling)  # type: ignore[arg-type]
        return Prepared(slot, answerer.render(question, chunks), sampling)

    # -- generation ----------------------------------------------------------------------------------------
    def submit(self, prepared: Prepared) -> Job | RemoteJob:
        if prepared.messages is not None:
            assert self.remote is not None and prepared.slot.engine_model is not None
            return self.remote.submit(prepared.slot.engine_model, prepared.messages, prepared.sampling)
        job = Job(slot=prepared.slot, prompt_ids=prepared.question.prompt_ids, sampling=prepared.sampling,
                  loop=asyncio.get_running_loop())
        self.batcher.submit(job)
        return job

    # -- evidence -------------------------------------------------------------------------------------------
    def evidence_settings(self, answer_style: str | None) -> EvidenceSettings:
        """evidence.*, with the request's answer style when it names one."""
        return replace(self.evidence, answer_style=AnswerStyle(answer_style)) if answer_style else self.evidence

    def evidence_plan(self, question: str, chunks: list[ContextChunk], settings: EvidenceSettings) -> EvidencePlan:
        """The question's support by each sentence of its sources: whether to abstain (nothing generated)."""
        return plan(question, chunks, _ComputeEmbedder(self.embedder), settings)

    def evidenced(self, question: str, generated: str | None, evidence_plan: EvidencePlan,
                  settings: EvidenceSettings) -> EvidencedAnswer:
        """The answer as returned: abstention, quoted sentences, or the generated text with its [n] markers."""
        return with_evidence(question, generated, evidence_plan, _ComputeEmbedder(self.embedder),
                             settings)

    # -- conversations -------------------------------------------------------------------------------------
    def store_conversation(self, question: str, answer: str, chunk_ids: list[str], model_id: str) -> str:
        """Store an answered question; personal data in it replaced first when a redactor is set, since
        liked conversations become training data."""
        if self.redactor is not None:
            question, answer = self.redactor.redact(question).text, self.redactor.redact(answer).text
        with self.pool.store() as store:
            conversation_id = store.add_conversation(question, answer, chunk_ids, model_version=model_id)
        self.metrics.conversations.inc()
        return conversation_id

    def set_feedback(self, conversation_id: str, feedback: str | None) -> bool:
        with self.pool.store() as store:
            return store.set_feedback(conversation_id, feedback)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _ComputeEmbedder:
    """The embedder, run on the compute thread: one batch at a time, in turn with generation
    (promptly/serving/compute.py)."""

    embedder: Any

    def embed_queries(self, texts: list[str]) -> Any:
        return on_compute_thread(self.embedder.embed_queries, texts)

    def embed_documents(self, texts: list[str]) -> Any:
        return on_compute_thread(self.embedder.embed_documents, texts)
