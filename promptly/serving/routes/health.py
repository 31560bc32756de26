"""Liveness, readiness and the Prometheus metrics: what an orchestrator and a scraper poll."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from promptly.serving.state import State

router = APIRouter()


@router.get("/healthz")  # as soon as the process serves HTTP, while the model still loads
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")  # 200 with the served model once model and store are ready; 503 with the reason before
async def readyz(state: State) -> JSONResponse:
    engine = state.engine
    reason = engine.not_ready()
    remote = {"engine": "openai"} if engine.remote else {}
    if reason:
        return JSONResponse({"status": "not ready", "reason": reason, **remote}, status_code=503)
    slot = engine.slot()
    if slot.engine_model is not None:
        remote["engine_model"] = slot.engine_model
    return JSONResponse({"status": "ready", "model": slot.model_id, **remote})


@router.get("/metrics")
async def prometheus(state: State) -> Response:
    return Response(state.metrics.render(), media_type=state.metrics.content_type)
