"""The served model: OpenAI's model list (with the alias, when serve.model_alias sets one) and the
evaluation report of the version being served."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from promptly.serving.reports import evaluation_report
from promptly.serving.state import State

router = APIRouter()


@router.get("/v1/models")
async def models(state: State) -> dict[str, Any]:
    slot = state.ready_slot()
    data = [{"id": slot.model_id, "object": "model", "created": 0, "owned_by": "promptly",
             "origin": slot.loaded.origin,
             "version": slot.version.version if slot.version else None,
             "repo_id": slot.version.repo_id if slot.version else None}]
    alias = state.settings.model_alias
    if alias:
        data.append({"id": alias, "object": "model", "created": 0, "owned_by": "promptly", "alias_of": slot.model_id})
    return {"object": "list", "data": data}


@router.get("/v1/report")
async def report(state: State) -> dict[str, Any]:
    return await run_in_threadpool(evaluation_report, state.ready_slot(), state.engine.cfg)
