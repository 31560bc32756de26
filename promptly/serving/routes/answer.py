"""A prepared chat answer on its way out: whole, streamed (SSE ending in [DONE]), or known at once (an
abstention or an extractive answer: nothing to generate). Its [n] markers and `evidence` are added when the
text is whole, and only then is it stored as a conversation: nothing is stored for a request that failed."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from promptly.errors import PromptlyError
from promptly.evidence import EvidencePlan
from promptly.serving import protocol as p
from promptly.serving.batching import Job
from promptly.serving.engine import Engine, Prepared
from promptly.serving.http_errors import error_response
from promptly.serving.remote import RemoteJob
from promptly.serving.routes.deadlines import within
from promptly.settings import EvidenceSettings

SSE_HEADERS = {"Cache-Control": "no-cache"}


@dataclass
class Answer:
    """One prepared question: what it is answered from, and by when."""

    engine: Engine
    prepared: Prepared
    support: EvidencePlan
    """Each source sentence's support: whether to abstain, what to quote, where the markers go."""
    evidence: EvidenceSettings
    arrival: float
    """time.monotonic() when the request came in (time to first token counts from here)."""
    deadline: float
    """When the next piece must have come (math.inf once a local answer started: it is bounded by max_tokens)."""
    include_usage: bool = False
    """stream_options.include_usage: a last streamed event with the token counts."""
    cid: str = field(default_factory=p.new_completion_id)

    @property
    def model(self) -> str:
        return self.prepared.slot.model_id

    async def at_once(self, stream: bool) -> JSONResponse | StreamingResponse:
        """An answer with nothing to generate (an abstention, or extractive): known at once, streamed whole."""
        final = await run_in_threadpool(self.engine.evidenced, self.prepared.question.question, None, self.support,
                                        self.evidence)
        conversation_id = await self._store(final.text)
        cid, model, usage = self.cid, self.model, _usage(self.prepared, 0)
        citations, evidence = _citations(self.prepared), p.evidence_json(final)
        if not stream:
            return JSONResponse(p.completion(cid, model, final.text, "stop", usage, citations, conversation_id,
                                             evidence))
        events = [p.chunk(cid, model, {"role": "assistant", "content": ""}),
                  p.chunk(cid, model, {"content": final.text}),
                  p.chunk(cid, model, {}, "stop", citations=citations, evidence=evidence,
                          conversation_id=conversation_id)]
        if self.include_usage:
            events.append({**p.chunk(cid, model, {}), "choices": [], "usage": usage})
        return StreamingResponse(_replay(events), media_type="text/event-stream", headers=SSE_HEADERS)

    async def whole(self, job: Job | RemoteJob, held: ExitStack) -> JSONResponse:
        """The answer in one body; the admission (`held`) is released once it is stored."""
        with held:
            text, count, engine_usage = "", 0, None
            async for kind, value in self._events(job):
                if kind in ("token", "delta"):
                    count += 1
                elif kind == "usage":
                    engine_usage = value
                else:
                    text = value
            text, marked = await self._marked(text)
            conversation_id = await self._store(text)
        count = int(engine_usage["completion_tokens"]) if engine_usage else count
        finish = _finish(count, self.prepared.sampling.max_new_tokens)
        return JSONResponse(p.completion(self.cid, self.model, text, finish, _usage(self.prepared, count, engine_usage),
                                         _citations(self.prepared), conversation_id, marked))

    async def stream(self, job: Job | RemoteJob, held: ExitStack) -> AsyncIterator[str]:
        """The answer as server-sent events, piece by piece; the admission (`held`) is released at the end.
        An error after the headers travels as an event (OpenAI's clients raise it), then [DONE]."""
        cid, model = self.cid, self.model
        decoder = _Decoder(self.prepared.slot.loaded.tokenizer)
        count, engine_usage = 0, None
        with held:
            yield _sse(p.chunk(cid, model, {"role": "assistant", "content": ""}))
            try:
                async for kind, value in self._events(job):
                    if kind == "token":
                        count += 1
                        delta = decoder.add(value)
                    elif kind == "delta":  # an engine's text piece (serve.engine=openai) passes through as is
                        count += 1
                        delta = value
                    elif kind == "usage":
                        engine_usage, delta = value, ""
                    elif isinstance(job, RemoteJob):
                        delta, text = "", value
                    else:
                        delta, text = decoder.finish(value), value
                    if delta:
                        yield _sse(p.chunk(cid, model, {"content": delta}))
                text, marked = await self._marked(text)  # the UI shows it in place
                conversation_id = await self._store(text)
            except PromptlyError as err:
                yield _sse(json.loads(bytes(error_response(err).body)))
                yield "data: [DONE]\n\n"
                return
            yield _sse(p.chunk(cid, model, {}, _finish(count, self.prepared.sampling.max_new_tokens),
                               citations=_citations(self.prepared), evidence=marked, conversation_id=conversation_id))
            if self.include_usage:
                yield _sse({**p.chunk(cid, model, {}), "choices": [],
                            "usage": _usage(self.prepared, count, engine_usage)})
            yield "data: [DONE]\n\n"

    async def _events(self, job: Job | RemoteJob) -> AsyncIterator[tuple[str, Any]]:
        """The job's tokens and its final text; a timeout or a client gone cancels the job."""
        first, finished = True, False
        try:
            while True:
                kind, value = await within(self.engine, job.events.get(), self.deadline)
                if kind == "error":
                    finished = True
                    raise value
                if kind in ("token", "delta") and first:
                    first = False
                    self.engine.metrics.ttft_seconds.observe(time.monotonic() - self.arrival)
                finished = kind == "done"
                yield kind, value
                if finished:
                    return
        finally:
            if not finished:
                job.cancelled = True

    async def _marked(self, text: str) -> tuple[str, dict[str, Any]]:
        """The generated text with its [n] markers, and the `evidence` field."""
        final = await run_in_threadpool(self.engine.evidenced, self.prepared.question.question, text, self.support,
                                        self.evidence)
        return final.text, p.evidence_json(final)

    async def _store(self, text: str) -> str:
        chunk_ids = [c["chunk_id"] for c in self.prepared.question.chunks]
        return await run_in_threadpool(self.engine.store_conversation, self.prepared.question.question, text,
                                       chunk_ids, self.model)


def _finish(count: int, max_new_tokens: int) -> str:
    return "length" if count >= max_new_tokens else "stop"


def _usage(prepared: Prepared, count: int, engine_usage: dict[str, int] | None = None) -> dict[str, int]:
    """Token counts: the engine's own when it sent them (serve.engine=openai), else this server's."""
    if engine_usage:
        prompt, count = int(engine_usage["prompt_tokens"]), int(engine_usage["completion_tokens"])
        return {"prompt_tokens": prompt, "completion_tokens": count, "total_tokens": prompt + count}
    prompt = len(prepared.question.prompt_ids)
    return {"prompt_tokens": prompt, "completion_tokens": count, "total_tokens": prompt + count}


def _citations(prepared: Prepared) -> list[dict[str, Any]]:
    return [p.citation_json(n, c, with_content=True) for n, c in enumerate(prepared.question.chunks, start=1)]


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def _replay(events: list[dict[str, Any]]) -> AsyncIterator[str]:
    for event in events:
        yield _sse(event)
    yield "data: [DONE]\n\n"


class _Decoder:
    """Token ids to text deltas: the whole answer decoded again each time (a token may complete a
    character only with the next one), and only what was not sent yet sent."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer, self.sent = tokenizer, ""
        self.ids: list[int] = []

    def add(self, token: int) -> str:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True).lstrip()
        if text.endswith("\ufffd") or not text.startswith(self.sent):
            return ""
        delta, self.sent = text[len(self.sent):], text
        return delta

    def finish(self, final: str) -> str:
        """What the final (stripped) answer adds to what was streamed."""
        if final.startswith(self.sent):
            delta, self.sent = final[len(self.sent):], final
            return delta
        return ""

