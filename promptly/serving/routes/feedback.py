"""Feedback on a stored conversation (the id an answer returned): thumbs up, down, or cleared."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from promptly.errors import ConfigError, InputNotFoundError
from promptly.serving import protocol as p
from promptly.serving.state import State

router = APIRouter()


@router.post("/v1/feedback")
async def feedback(body: p.FeedbackRequest, state: State) -> dict[str, Any]:
    try:
        conversation_id = str(uuid.UUID(body.conversation_id))
    except ValueError:
        raise ConfigError(f"conversation_id {body.conversation_id!r} is not a conversation id (a UUID)") from None
    if not await run_in_threadpool(state.engine.set_feedback, conversation_id, body.feedback):
        raise InputNotFoundError(f"no conversation {conversation_id}")
    return {"conversation_id": conversation_id, "feedback": body.feedback}
