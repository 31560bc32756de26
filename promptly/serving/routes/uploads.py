"""A user's own documents: an upload is a job (202 with its Location) that redacts, chunks and embeds in the
background; its owner lists, polls and cancels it. Another user's job is a 404, as if it did not exist."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from promptly.serving.state import State

router = APIRouter()


@router.post("/v1/uploads", status_code=202)
async def upload(state: State, file: UploadFile = File(...), user: str = Form(...)) -> JSONResponse:  # noqa: B008
    jobs, owner = state.upload_jobs(user)
    data = await file.read(state.settings.max_upload_bytes + 1)  # one byte over: the job refuses it as too large
    job = await run_in_threadpool(jobs.submit, owner, file.filename or "", data)
    return JSONResponse(job.to_json(), status_code=202, headers={"Location": f"/v1/uploads/{job.id}"})


@router.get("/v1/uploads")
async def upload_list(state: State, user: str | None = None) -> dict[str, Any]:
    jobs, owner = state.upload_jobs(user)
    return {"object": "list", "data": [job.to_json() for job in jobs.owned_by(owner)]}


@router.get("/v1/uploads/{job_id}")
async def upload_status(job_id: str, state: State, user: str | None = None) -> dict[str, Any]:
    jobs, owner = state.upload_jobs(user)
    return jobs.get(job_id, owner).to_json()


@router.delete("/v1/uploads/{job_id}")
async def upload_cancel(job_id: str, state: State, user: str | None = None) -> dict[str, Any]:
    jobs, owner = state.upload_jobs(user)
    return jobs.cancel(job_id, owner).to_json()
