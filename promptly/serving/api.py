"""The HTTP API: FastAPI routers over the Engine, OpenAI-compatible where OpenAI has a route.

    GET  /healthz  /readyz  /metrics  /v1/models  /v1/report
    POST /v1/chat/completions (stream: SSE ending in [DONE])  /v1/retrieve  /v1/feedback
    POST /v1/uploads (202: a job)  GET /v1/uploads[/{id}]  DELETE /v1/uploads/{id} (cancel)

One router per resource (`routes/`), the state they share on `app.state` (`state.py`), the API key and the
request metrics in one middleware (`access.py`), and every error's status and log line in `http_errors.py`:
a 4xx for what the client got wrong (never a 500), in OpenAI's `{"error": {...}}` shape. Nothing is stored
for a request that failed: its conversation is written after its answer is whole.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from promptly.serving.access import observe
from promptly.serving.engine import Engine
from promptly.serving.http_errors import install_error_handlers
from promptly.serving.routes import ROUTERS
from promptly.serving.state import AppState
from promptly.serving.upload_jobs import UploadJobs


def create_app(engine: Engine, uploads: UploadJobs | None = None) -> FastAPI:
    """The app; its lifespan starts the engine (model loading in the background) and the upload workers,
    and stops them."""
    state = AppState(engine, uploads, routes=tuple(route for router in ROUTERS for route in router.routes))

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
    app.state.promptly = state
    app.middleware("http")(observe)
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
