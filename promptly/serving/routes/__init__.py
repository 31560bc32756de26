"""The API's routers, one per resource; `promptly.serving.api.create_app` includes them all.

    health       GET /healthz  /readyz  /metrics
    models       GET /v1/models  /v1/report (the served version's evaluation report)
    chat         POST /v1/chat/completions (answer.py: the answer whole, streamed, or known at once)
    retrieval    POST /v1/retrieve
    feedback     POST /v1/feedback (on a stored conversation)
    uploads      POST /v1/uploads (202: a job)  GET /v1/uploads[/{id}]  DELETE /v1/uploads/{id} (cancel)

Route functions have no docstrings (a comment where one helps): FastAPI would publish a docstring as the
operation's description in /openapi.json.
"""

from __future__ import annotations

from fastapi import APIRouter

from promptly.serving.routes import chat, feedback, health, models, retrieval, uploads

ROUTERS: tuple[APIRouter, ...] = (health.router, models.router, retrieval.router, feedback.router, uploads.router,
                                  chat.router)
"""Every router, in the order the API docs list them."""
