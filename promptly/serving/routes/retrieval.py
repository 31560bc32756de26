"""Search without an answer: the chunks a question would be answered from, as the requester may see them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from promptly.serving import protocol as p
from promptly.serving.engine import check_owner
from promptly.serving.state import State

router = APIRouter()


@router.post("/v1/retrieve")  # admitted like an answer: a burst of searches gets 429s too
async def retrieve(body: p.RetrieveRequest, state: State) -> dict[str, Any]:
    state.ready_slot()
    owner = check_owner(body.user)
    engine = state.engine
    with engine.admit():
        chunks = await run_in_threadpool(engine.retrieve, body.query, body.k, body.search_filter(), owner)
    return {"object": "list", "data": [p.citation_json(n, c, with_content=True) for n, c in enumerate(chunks, start=1)]}
