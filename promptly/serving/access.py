"""The middleware every request passes: the API key on /v1/ routes (when serve.api_key_env names one), and
the request count and latency in /metrics, under the route's template (a refused request included)."""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from promptly.serving import protocol as p
from promptly.serving.http_errors import log_refusal, route_path
from promptly.serving.state import app_state


def unauthorized(header: str, key: str) -> str | None:
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


async def observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Refuse a /v1/ request without the key (401, before routing), then count every request. The key is
    read per request, so rotating the environment variable needs no restart."""
    started = time.monotonic()
    settings = app_state(request).settings
    key = os.environ.get(settings.api_key_env) if settings.api_key_env else None
    if key and request.url.path.startswith("/v1/"):
        refused = unauthorized(request.headers.get("authorization", ""), key)
        if refused:
            log_refusal(request, 401, refused)
            response: Response = JSONResponse(p.error_body(refused, "invalid_request_error", "invalid_api_key"),
                                              status_code=401)
            _count(request, response, started)
            return response
    response = await call_next(request)
    _count(request, response, started)
    return response


def _count(request: Request, response: Response, started: float) -> None:
    metrics = app_state(request).metrics
    path = route_path(request)
    metrics.requests.labels(path, request.method, str(response.status_code)).inc()
    metrics.request_seconds.labels(path).observe(time.monotonic() - started)
