"""What every route shares: the engine and the upload jobs of one app, reached through a FastAPI dependency.

The state hangs on `app.state`, not in module globals, so two apps in one process (the tests, a benchmark)
never see each other's engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.routing import BaseRoute

from promptly.errors import ConfigError, PromptlyError
from promptly.serving.config import ServeSettings
from promptly.serving.engine import Engine, check_owner
from promptly.serving.metrics import ServerMetrics
from promptly.serving.models import ModelSlot
from promptly.serving.upload_jobs import UploadJobs


class NotReadyError(PromptlyError):
    """The model or the store is not ready (503)."""


@dataclass(frozen=True)
class AppState:
    """One app's engine and (when serve has an ingest config) its upload jobs."""

    engine: Engine
    uploads: UploadJobs | None = None
    """None: uploads are not enabled on this server (503 on /v1/uploads)."""
    routes: tuple[BaseRoute, ...] = ()
    """Every API route, flat: a request refused before routing (401) is matched against them to be counted
    and logged under its route (FastAPI keeps an included router's routes out of `app.router.routes`)."""

    @property
    def settings(self) -> ServeSettings:
        return self.engine.settings

    @property
    def metrics(self) -> ServerMetrics:
        return self.engine.metrics

    def ready_slot(self) -> ModelSlot:
        """The served model, or a 503 naming why the server cannot answer yet."""
        reason = self.engine.not_ready()
        if reason:
            raise NotReadyError(reason)
        return self.engine.slot()

    def upload_jobs(self, user: str | None) -> tuple[UploadJobs, str]:
        """The upload jobs and the requester that owns them; uploads always have an owner."""
        if self.uploads is None:
            raise NotReadyError("uploads are not enabled on this server")
        owner = check_owner(user)
        if owner is None:
            raise ConfigError("uploads need a `user` (their owner)")
        return self.uploads, owner


def app_state(request: Request) -> AppState:
    """The dependency: the state `create_app` put on the app that received the request."""
    state: AppState = request.app.state.promptly
    return state


State = Annotated[AppState, Depends(app_state)]
"""A route parameter typed `State` receives its app's AppState."""
