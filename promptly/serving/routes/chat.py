"""POST /v1/chat/completions: OpenAI's chat completion over the store's sources.

A request is checked (each client mistake a 4xx, in a fixed order), admitted (429 beyond serve.max_pending
or when it could not start in time), retrieved and prepared, then waits for its answer to start (a 429 if
that cannot happen within serve.request_timeout_s); the admission is held until the answer's last byte.
"""

from __future__ import annotations

import math
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from promptly.answering import needs_generation
from promptly.model.config import SamplingConfig
from promptly.serving import protocol as p
from promptly.serving.batching import Job
from promptly.serving.engine import Engine, check_owner
from promptly.serving.http_errors import ModelNotFoundError
from promptly.serving.models import ModelSlot
from promptly.serving.remote import RemoteJob
from promptly.serving.routes.answer import SSE_HEADERS, Answer
from promptly.serving.routes.deadlines import before_start, within
from promptly.serving.state import AppState, State

router = APIRouter()


@router.post("/v1/chat/completions", response_model=None)
async def chat(body: p.ChatRequest, state: State) -> JSONResponse | StreamingResponse:
    arrival = time.monotonic()
    ask = _checked(state, body)
    engine = state.engine
    held = ExitStack()
    held.enter_context(engine.admit())
    try:
        answer = await _prepared(engine, body, ask, arrival, arrival + state.settings.request_timeout_s)
        if not needs_generation(answer.support, answer.evidence):  # abstained, or quoted: nothing to generate
            with held:
                return await answer.at_once(body.stream)
        job = engine.submit(answer.prepared)
        await _started(answer, job)
    except BaseException:
        held.close()
        raise
    if body.stream:  # the stream releases its admission when it ends; the background task if it never started
        return StreamingResponse(answer.stream(job, held), media_type="text/event-stream", headers=SSE_HEADERS,
                                 background=BackgroundTask(held.close))
    return await answer.whole(job, held)


@dataclass(frozen=True)
class _Ask:
    """A checked request: its question, the model that answers it, and how."""

    question: str
    slot: ModelSlot
    owner: str | None
    sampling: SamplingConfig
    system: str
    search_filter: dict[str, Any] | None


def _checked(state: AppState, body: p.ChatRequest) -> _Ask:
    """Check the request before it is admitted, in the order its errors are reported: the question, the
    server's readiness, the model's name, the user, the sampling settings."""
    question = body.question()
    slot = state.ready_slot()
    alias = state.settings.model_alias
    if body.model not in (slot.model_id, alias):
        raise ModelNotFoundError(f"the model {body.model!r} is not served here: use {slot.model_id!r} or "
                                 f"{alias!r} (GET /v1/models)")
    owner = check_owner(body.user)
    engine = state.engine
    sampling = engine.sampling_for(body.max_completion_tokens or body.max_tokens, body.temperature, body.top_p)
    system = engine.system_prompt(slot, body.style, body.system_instruction())
    return _Ask(question, slot, owner, sampling, system, body.search_filter())


async def _prepared(engine: Engine, body: p.ChatRequest, ask: _Ask, arrival: float, deadline: float) -> Answer:
    """Retrieve (a 429 if it cannot finish by the deadline), render the prompt, and plan the evidence."""
    chunks = await before_start(engine, run_in_threadpool(engine.retrieve, ask.question, body.k, ask.search_filter,
                                                          ask.owner), deadline)
    prepared = await run_in_threadpool(engine.prepare, ask.slot, ask.question, chunks, ask.system, ask.sampling)
    evidence = engine.evidence_settings(body.answer_style)
    support = await run_in_threadpool(engine.evidence_plan, ask.question, list(prepared.question.chunks), evidence)
    include_usage = bool((body.stream_options or {}).get("include_usage"))
    return Answer(engine, prepared, support, evidence, arrival, deadline, include_usage)


async def _started(answer: Answer, job: Job | RemoteJob) -> None:
    """Wait for the answer's first piece: an engine's (or its failure, 502/503) under the deadline, before
    any 200; a local answer's row in the batch, or a 429. A failure cancels the job. Once started, the
    deadline is lifted: an engine's further pieces each come within serve.openai.timeout_s, and a local
    answer's length is bounded by max_tokens."""
    try:
        if isinstance(job, RemoteJob):
            await within(answer.engine, job.started(), answer.deadline)
        else:
            await before_start(answer.engine, job.started(), answer.deadline)
    except BaseException:
        job.cancelled = True
        raise
    answer.deadline = math.inf
