"""Every API error in one place: which exception is which status, and the handlers that answer it.

Each error is OpenAI's `{"error": {...}}` shape with a 4xx for what the client got wrong (never a 500). A
client's mistake is one warning line without a traceback; only the unexpected (500) logs its traceback.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from promptly.errors import ConfigError, EmptyInputError, InputNotFoundError, PromptlyError
from promptly.serving import protocol as p
from promptly.serving.engine import OverloadedError
from promptly.serving.remote import EngineFailedError, EngineUnavailableError
from promptly.serving.state import NotReadyError, app_state
from promptly.serving.uploads import UploadTooLargeError
from promptly.store.base import StoreError

log = logging.getLogger("promptly.serving.api")  # the API's one log channel, whichever module writes the line


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
"""The first matching row wins: subclasses (OverloadedError is a PromptlyError) come before their bases."""


def error_response(err: Exception) -> JSONResponse:
    """The response for `err` (a 429 carries Retry-After); anything not in STATUS is a 500 with its traceback."""
    for kind, status, code in STATUS:
        if isinstance(err, kind):
            headers = {"Retry-After": str(err.retry_after_s)} if isinstance(err, OverloadedError) else None
            kind_name = "invalid_request_error" if status < 500 else "server_error"
            return JSONResponse(p.error_body(str(err), kind_name, code), status_code=status, headers=headers)
    log.exception("unexpected error", exc_info=err)
    return JSONResponse(p.error_body("internal error (see the server log)", "server_error"), status_code=500)


def route_path(request: Request) -> str:
    """The route's template (/v1/uploads/{job_id}); a request refused before routing (401) is matched
    here, so /metrics counts it under its route, not "unmatched"."""
    route = request.scope.get("route")
    if route is None:
        route = next((r for r in app_state(request).routes if r.matches(request.scope)[0] != Match.NONE), None)
    return str(getattr(route, "path", "unmatched"))


def log_refusal(request: Request, status: int, reason: str) -> None:
    """One line per client error (the client's mistake needs no traceback in the server's log)."""
    log.warning("%s %s %d: %s", request.method, route_path(request), status, reason)


async def bad_body(request: Request, err: RequestValidationError) -> JSONResponse:
    """A body that fails its schema: 400 naming the first field at fault."""
    first = err.errors()[0] if err.errors() else {}
    where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
    reason = str(first.get("msg", "malformed")).removeprefix("Value error, ")
    if first.get("type") == "string_unicode":  # pydantic's own refusal of a lone surrogate in a plain str
        reason = "contains a lone UTF-16 surrogate (not valid Unicode text)"
    message = f"invalid request: {where or 'body'}: {reason}"
    log_refusal(request, 400, message)
    return JSONResponse(p.error_body(message, "invalid_request_error", "invalid_request", where or None), 400)


async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
    """Starlette's own refusals (404 no route, 405 wrong method) in OpenAI's shape."""
    log_refusal(request, err.status_code, str(err.detail))
    return JSONResponse(p.error_body(str(err.detail), "invalid_request_error"), err.status_code)


async def known_error(request: Request, err: PromptlyError) -> JSONResponse:
    """Errors with a status of their own (STATUS), handled inside the app: one log line, no traceback."""
    response = error_response(err)
    if response.status_code < 500:
        log_refusal(request, response.status_code, str(err))
    elif response.status_code != 500:  # 503 store down, 504 timeout: the reason is the whole story
        log.error("%s %s %d: %s", request.method, route_path(request), response.status_code, err)
    return response


async def any_error(_: Request, err: Exception) -> JSONResponse:
    """Anything unexpected: 500, and its traceback in the log."""
    return error_response(err)


def install_error_handlers(app: FastAPI) -> None:
    """Every handler above on `app` (the order does not matter: Starlette picks the closest class)."""
    app.exception_handler(RequestValidationError)(bad_body)
    app.exception_handler(StarletteHTTPException)(http_error)
    app.exception_handler(PromptlyError)(known_error)
    app.exception_handler(Exception)(any_error)
