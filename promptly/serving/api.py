"""The HTTP API: FastAPI routes over the Engine, OpenAI-compatible where OpenAI has a route.

    GET  /healthz  /readyz  /metrics  /v1/models  /v1/report
    POST /v1/chat/completions (stream: SSE ending in [DONE])  /v1/retrieve  /v1/feedback
    POST /v1/uploads (202: a job)  GET /v1/uploads[/{id}]  DELETE /v1/uploads/{id} (cancel)

Every error is OpenAI's `{"error": {...}}` shape with a 4xx for what the client got wrong (never a 500),
and nothing is stored for a request that failed: its conversation is written after its answer is whole.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from promptly.answering import needs_generation
from promptly.errors import ConfigError, EmptyInputError, InputNotFoundError, PromptlyError
from promptly.evidence import EvidencePlan
from promptly.serving import protocol as p
from promptly.serving.batching import Job
from promptly.serving.engine import Engine, OverloadedError, Prepared, check_owner
from promptly.serving.models import ModelSlot
from promptly.serving.remote import EngineFailedError, EngineUnavailableError, RemoteJob
from promptly.serving.reports import evaluation_report
from promptly.serving.upload_jobs import UploadJobs
from promptly.serving.uploads import UploadTooLargeError
from promptly.settings import EvidenceSettings
from promptly.store.base import StoreError

log = logging.getLogger(__name__)


class NotReadyError(PromptlyError):
    """The model or the store is not ready (503)."""


class ModelNotFoundError(PromptlyError):
    """The request named a model this server does not serve (404)."""


class RequestTimeoutError(PromptlyError):
    """The answer was not ready within serve.request_timeout_s (504)."""


STATUS: list[tuple[type[Exception], int, str]] = [
    (EngineUnavailableError, 503, "engine_unavailable"), (EngineFailedError, 502, "engine_error"),
    (OverloadedError, 429, "rate_limit_exceeded"), (RequestTimeoutError, 504, "timeout"),
    (ModelNotFoundError, 404, "model_not_found"), (UploadTooLargeError, 413, "upload_too_large"),
    (NotReadyError, 503, "not_ready"), (StoreError, 503, "store_unavailable"),
    (InputNotFoundError, 404, "not_found"), (ConfigError, 400, "invalid_request"),
    (EmptyInputError, 400, "invalid_request"),
]


def error_response(err: Exception) -> JSONResponse:
    for kind, status, code in STATUS:
        if isinstance(err, kind):
            headers = {"Retry-After": str(err.retry_after_s)} if isinstance(err, OverloadedError) else None
            kind_name = "invalid_request_error" if status < 500 else "server_error"
            return JSONResponse(p.error_body(str(err), kind_name, code), status_code=status, headers=headers)
    log.exception("unexpected error", exc_info=err)
    return JSONResponse(p.error_body("internal error (see the server log)", "server_error"), status_code=500)


def _unauthorized(header: str, key: str) -> str | None:
    """Why the Authorization header does not carry the API key, or None when it does (RFC 6750: the scheme
    is "Bearer", in any case, then the key; a bare key is refused, as OpenAI's API refuses it)."""
    scheme, _, given = header.strip().partition(" ")
    if not header.strip():
        return "an API key is required: send the header 'Authorization: Bearer <key>'"
    if scheme.lower() != "bearer":
        return "the Authorization header must be 'Bearer <key>' (the scheme 'Bearer' is missing)"
    if not hmac.compare_digest(given.strip().encode(), key.encode()):
        return "the API key is not valid (Authorization: Bearer <key>)"
    return None


def create_app(engine: Engine, uploads: UploadJobs | None = None) -> FastAPI:
    """The app; its lifespan starts the engine (model loading in the background) and the upload workers,
    and stops them."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        engine.start()
        if uploads is not None:
            uploads.start()
        try:
            yield
        finally:
            if uploads is not None:
                await run_in_threadpool(uploads.stop)
            await run_in_threadpool(engine.stop)

    app = FastAPI(title="promptly", lifespan=lifespan)
    settings, metrics = engine.settings, engine.metrics

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Any]) -> Response:
        started = time.monotonic()
        key = os.environ.get(settings.api_key_env) if settings.api_key_env else None
        if key and request.url.path.startswith("/v1/"):
            refused = _unauthorized(request.headers.get("authorization", ""), key)
            if refused:
                _log_refusal(request, 401, refused)
                response: Response = JSONResponse(p.error_body(refused, "invalid_request_error", "invalid_api_key"),
                                                  status_code=401)
                _count(request, response, started)
                return response
        response = await call_next(request)
        _count(request, response, started)
        return response

    def _count(request: Request, response: Response, started: float) -> None:
        path = _route_path(request)
        metrics.requests.labels(path, request.method, str(response.status_code)).inc()
        metrics.request_seconds.labels(path).observe(time.monotonic() - started)

    def _route_path(request: Request) -> str:
        """The route's template (/v1/uploads/{job_id}); a request refused before routing (401) is matched
        here, so /metrics counts it under its route, not "unmatched"."""
        route = request.scope.get("route")
        if route is None:
            route = next((r for r in app.router.routes if r.matches(request.scope)[0] != Match.NONE), None)
        return str(getattr(route, "path", "unmatched"))

    def _log_refusal(request: Request, status: int, reason: str) -> None:
        """One line per client error (the client's mistake needs no traceback in the server's log)."""
        log.warning("%s %s %d: %s", request.method, _route_path(request), status, reason)

    @app.exception_handler(RequestValidationError)
    async def bad_body(request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        reason = str(first.get("msg", "malformed")).removeprefix("Value error, ")
        if first.get("type") == "string_unicode":  # pydantic's own refusal of a lone surrogate in a plain str
            reason = "contains a lone UTF-16 surrogate (not valid Unicode text)"
        message = f"invalid request: {where or 'body'}: {reason}"
        _log_refusal(request, 400, message)
        return JSONResponse(p.error_body(message, "invalid_request_error", "invalid_request", where or None), 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        _log_refusal(request, err.status_code, str(err.detail))
        return JSONResponse(p.error_body(str(err.detail), "invalid_request_error"), err.status_code)

    @app.exception_handler(PromptlyError)
    async def known_error(request: Request, err: PromptlyError) -> JSONResponse:
        """Errors with a status of their own (STATUS), handled inside the app: one log line, no traceback."""
        response = error_response(err)
        if response.status_code < 500:
            _log_refusal(request, response.status_code, str(err))
        elif response.status_code != 500:  # 503 store down, 504 timeout: the reason is the whole story
            log.error("%s %s %d: %s", request.method, _route_path(request), response.status_code, err)
        return response

    @app.exception_handler(Exception)
    async def any_error(_: Request, err: Exception) -> JSONResponse:
        """Anything unexpected: 500, and its traceback in the log."""
        return error_response(err)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        reason = engine.not_ready()
        remote = {"engine": "openai"} if engine.remote else {}
        if reason:
            return JSONResponse({"status": "not ready", "reason": reason, **remote}, status_code=503)
        slot = engine.slot()
        if slot.engine_model is not None:
            remote["engine_model"] = slot.engine_model
        return JSONResponse({"status": "ready", "model": slot.model_id, **remote})

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        slot = _ready_slot()
        data = [{"id": slot.model_id, "object": "model", "created": 0, "owned_by": "promptly",
                 "origin": slot.loaded.origin,
                 "version": slot.version.version if slot.version else None,
                 "repo_id": slot.version.repo_id if slot.version else None}]
        if settings.model_alias:
            data.append({"id": settings.model_alias, "object": "model", "created": 0, "owned_by": "promptly",
                         "alias_of": slot.model_id})
        return {"object": "list", "data": data}

    @app.get("/v1/report")
    async def report() -> dict[str, Any]:
        return await run_in_threadpool(evaluation_report, _ready_slot(), engine.cfg)

    def _ready_slot() -> ModelSlot:
        reason = engine.not_ready()
        if reason:
            raise NotReadyError(reason)
        return engine.slot()

    @app.post("/v1/retrieve")
    async def retrieve(body: p.RetrieveRequest) -> dict[str, Any]:
        _ready_slot()
        owner = check_owner(body.user)
        with engine.admit():
            chunks = await run_in_threadpool(engine.retrieve, body.query, body.k, body.search_filter(), owner)
        return {"object": "list", "data": [p.citation_json(n, c, with_content=True)
                                           for n, c in enumerate(chunks, start=1)]}

    @app.post("/v1/feedback")
    async def feedback(body: p.FeedbackRequest) -> dict[str, Any]:
        try:
            conversation_id = str(uuid.UUID(body.conversation_id))
        except ValueError:
            raise ConfigError(f"conversation_id {body.conversation_id!r} is not a conversation id (a UUID)") from None
        if not await run_in_threadpool(engine.set_feedback, conversation_id, body.feedback):
            raise InputNotFoundError(f"no conversation {conversation_id}")
        return {"conversation_id": conversation_id, "feedback": body.feedback}

    def _uploads(user: str | None) -> tuple[UploadJobs, str]:
        if uploads is None:
            raise NotReadyError("uploads are not enabled on this server")
        owner = check_owner(user)
        if owner is None:
            raise ConfigError("uploads need a `user` (their owner)")
        return uploads, owner

    @app.post("/v1/uploads", status_code=202)
    async def upload(file: UploadFile = File(...), user: str = Form(...)) -> JSONResponse:  # noqa: B008
        jobs, owner = _uploads(user)
        data = await file.read(settings.max_upload_bytes + 1)
        job = await run_in_threadpool(jobs.submit, owner, file.filename or "", data)
        return JSONResponse(job.to_json(), status_code=202, headers={"Location": f"/v1/uploads/{job.id}"})

    @app.get("/v1/uploads")
    async def upload_list(user: str | None = None) -> dict[str, Any]:
        jobs, owner = _uploads(user)
        return {"object": "list", "data": [job.to_json() for job in jobs.owned_by(owner)]}

    @app.get("/v1/uploads/{job_id}")
    async def upload_status(job_id: str, user: str | None = None) -> dict[str, Any]:
        jobs, owner = _uploads(user)
        return jobs.get(job_id, owner).to_json()

    @app.delete("/v1/uploads/{job_id}")
    async def upload_cancel(job_id: str, user: str | None = None) -> dict[str, Any]:
        jobs, owner = _uploads(user)
        return jobs.cancel(job_id, owner).to_json()

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(body: p.ChatRequest) -> JSONResponse | StreamingResponse:
        arrival = time.monotonic()
        question = body.question()
        slot = _ready_slot()
        if body.model not in (slot.model_id, settings.model_alias):
            raise ModelNotFoundError(f"the model {body.model!r} is not served here: use {slot.model_id!r} or "
                                     f"{settings.model_alias!r} (GET /v1/models)")
        owner = check_owner(body.user)
        sampling = engine.sampling_for(body.max_completion_tokens or body.max_tokens, body.temperature, body.top_p)
        system = engine.system_prompt(slot, body.style, body.system_instruction())
        search_filter = body.search_filter()
        deadline = arrival + settings.request_timeout_s
        held = ExitStack()
        held.enter_context(engine.admit())
        try:
            chunks = await _before_start(run_in_threadpool(engine.retrieve, question, body.k, search_filter,
                                                           owner), deadline)
            prepared = await run_in_threadpool(engine.prepare, slot, question, chunks, system, sampling)
            evidence = engine.evidence_settings(body.answer_style)
            support = await run_in_threadpool(engine.evidence_plan, question, list(prepared.question.chunks), evidence)
            if not needs_generation(support, evidence):  # abstained, or quoted: nothing to generate
                with held:
                    return await _answered(body, prepared, support, evidence)
            job = engine.submit(prepared)
        except BaseException:
            held.close()
            raise
        cid = p.new_completion_id()
        if isinstance(job, RemoteJob):  # the engine's first piece, or its failure (502/503) before any 200
            try:
                await _within(job.started(), deadline)
            except BaseException:
                job.cancelled = True
                held.close()
                raise
            deadline = float("inf")  # started: each further piece comes within serve.openai.timeout_s
        if isinstance(job, Job):  # a local answer starts within serve.request_timeout_s or is refused (429)
            try:
                await _start(job, deadline)
            except BaseException:
                job.cancelled = True
                held.close()
                raise
            deadline = math.inf  # once started it is finished: its length is bounded by max_tokens
        if body.stream:
            include_usage = bool((body.stream_options or {}).get("include_usage"))
            # the stream releases its admission when it ends; the background task if it never started
            return StreamingResponse(_stream(prepared, job, cid, arrival, deadline, held, include_usage,
                                             support, evidence),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"},
                                     background=BackgroundTask(held.close))
        with held:
            text, count, engine_usage = "", 0, None
            async for kind, value in _events(job, arrival, deadline):
                if kind in ("token", "delta"):
                    count += 1
                elif kind == "usage":
                    engine_usage = value
                else:
                    text = value
            text, marked = await _marked(prepared, text, support, evidence)
            conversation_id = await _store(prepared, text)
        count = int(engine_usage["completion_tokens"]) if engine_usage else count
        return JSONResponse(p.completion(cid, slot.model_id, text, _finish(count, sampling.max_new_tokens),
                                         _usage(prepared, count, engine_usage), _citations(prepared), conversation_id,
                                         marked))

    async def _marked(prepared: Prepared, text: str, support: EvidencePlan,
                      evidence: EvidenceSettings) -> tuple[str, dict[str, Any]]:
        """The generated text with its [n] markers, and the `evidence` field."""
        final = await run_in_threadpool(engine.evidenced, prepared.question.question, text, support, evidence)
        return final.text, p.evidence_json(final)

    async def _answered(body: p.ChatRequest, prepared: Prepared, support: EvidencePlan,
                        evidence: EvidenceSettings) -> JSONResponse | StreamingResponse:
        """An answer with nothing to generate (an abstention, or extractive): known at once, streamed whole."""
        final = await run_in_threadpool(engine.evidenced, prepared.question.question, None, support, evidence)
        conversation_id = await _store(prepared, final.text)
        cid, model, usage = p.new_completion_id(), prepared.slot.model_id, _usage(prepared, 0)
        if not body.stream:
            return JSONResponse(p.completion(cid, model, final.text, "stop", usage, _citations(prepared),
                                             conversation_id, p.evidence_json(final)))
        events = [p.chunk(cid, model, {"role": "assistant", "content": ""}),
                  p.chunk(cid, model, {"content": final.text}),
                  p.chunk(cid, model, {}, "stop", citations=_citations(prepared), evidence=p.evidence_json(final),
                          conversation_id=conversation_id)]
        if (body.stream_options or {}).get("include_usage"):
            events.append({**p.chunk(cid, model, {}), "choices": [], "usage": usage})

        async def sse() -> AsyncIterator[str]:
            for event in events:
                yield _sse(event)
            yield "data: [DONE]\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    async def _stream(prepared: Prepared, job: Job | RemoteJob, cid: str, arrival: float, deadline: float,
                      held: ExitStack, include_usage: bool, support: EvidencePlan,
                      evidence: EvidenceSettings) -> AsyncIterator[str]:
        model = prepared.slot.model_id
        decoder = _Decoder(prepared.slot.loaded.tokenizer)
        count, engine_usage = 0, None
        with held:
            yield _sse(p.chunk(cid, model, {"role": "assistant", "content": ""}))
            try:
                async for kind, value in _events(job, arrival, deadline):
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
                text, marked = await _marked(prepared, text, support, evidence)  # the UI shows it in place
                conversation_id = await _store(prepared, text)
            except PromptlyError as err:  # after the headers: the error travels as an event (the client raises)
                yield _sse(json.loads(bytes(error_response(err).body)))
                yield "data: [DONE]\n\n"
                return
            yield _sse(p.chunk(cid, model, {}, _finish(count, prepared.sampling.max_new_tokens),
                               citations=_citations(prepared), evidence=marked, conversation_id=conversation_id))
            if include_usage:
                yield _sse({**p.chunk(cid, model, {}), "choices": [], "usage": _usage(prepared, count, engine_usage)})
            yield "data: [DONE]\n\n"

    async def _events(job: Job | RemoteJob, arrival: float, deadline: float) -> AsyncIterator[tuple[str, Any]]:
        """The job's tokens and its final text; a timeout or a client gone cancels the job."""
        first, finished = True, False
        try:
            while True:
                kind, value = await _within(job.events.get(), deadline)
                if kind == "error":
                    finished = True
                    raise value
                if kind in ("token", "delta") and first:
                    first = False
                    metrics.ttft_seconds.observe(time.monotonic() - arrival)
                finished = kind == "done"
                yield kind, value
                if finished:
                    return
        finally:
            if not finished:
                job.cancelled = True

    async def _store(prepared: Prepared, text: str) -> str:
        chunk_ids = [c["chunk_id"] for c in prepared.question.chunks]
        return await run_in_threadpool(engine.store_conversation, prepared.question.question, text, chunk_ids,
                                       prepared.slot.model_id)

    async def _start(job: Job, deadline: float) -> None:
        await _before_start(job.started(), deadline)

    async def _before_start(awaitable: Any, deadline: float) -> Any:
        """Retrieval, then the wait for a row in the batch: what cannot start by the deadline is a 429 (the
        client may retry), never a 504 after the work was accepted."""
        try:
            return await asyncio.wait_for(awaitable, timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            metrics.rejected.labels("not_started").inc()
            raise OverloadedError(engine.retry_after(), " (the answer could not start within "
                                  f"serve.request_timeout_s={settings.request_timeout_s:g} s)") from None

    async def _within(awaitable: Any, deadline: float) -> Any:
        if deadline == math.inf:
            return await awaitable
        try:
            return await asyncio.wait_for(awaitable, timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            metrics.rejected.labels("timeout").inc()
            raise RequestTimeoutError(f"no answer within serve.request_timeout_s={settings.request_timeout_s:g} s: "
                                      "the request was cancelled (the server is busy, or the answer is long)"
                                      ) from None

    return app


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
