"""Where notifications go: webhooks named by environment variables, and GitHub Actions' step summary and
annotations when running there.

Webhook URLs carry their secret in the path, so they are read from the environment only (never from a
config file, which is saved with the run) and are among the variables `redact_text` masks. A delivery
that fails or hangs is retried a bounded number of times and then logged: a notification never fails
the job it reports on, so `notify` catches everything.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from promptly.notify.message import (
    Message,
    annotation,
    discord_payload,
    generic_payload,
    github_run_url,
    slack_payload,
    summary_markdown,
)
from promptly.utils.redact import redact_text

log = logging.getLogger(__name__)

WEBHOOK_ENV = {"slack": "SLACK_WEBHOOK_URL", "discord": "DISCORD_WEBHOOK_URL", "generic": "PROMPTLY_WEBHOOK_URL"}
"""One variable per payload shape; each is in promptly.utils.redact.SECRET_ENV_VARS."""


@dataclass(frozen=True)
class Webhook:
    kind: str
    """slack, discord or generic: the payload shape it is sent."""
    url: str = ""

    def __repr__(self) -> str:  # the URL is the secret: never in a repr, a log or a traceback's locals
        return f"Webhook({self.kind}, {urlsplit(self.url).hostname or '?'})"

    __str__ = __repr__


@dataclass(frozen=True)
class Retry:
    """How hard one delivery tries: at most `attempts` requests, each socket operation (connect, send,
    every read) bounded by `timeout_s`, waiting backoff_s, 2*backoff_s, ... between them."""

    attempts: int = 3
    timeout_s: float = 5.0
    backoff_s: float = 1.0
    max_wait_s: float = 10.0
    """Cap on one wait, including a 429's Retry-After."""

    def worst_case_s(self) -> float:
        """The longest a delivery can take (what the tests hold it to)."""
        waits = sum(min(self.backoff_s * 2**i, self.max_wait_s) for i in range(self.attempts - 1))
        return self.attempts * self.timeout_s * 3 + waits  # connect + send + read, per request


@dataclass(frozen=True)
class Delivery:
    """What happened to one webhook delivery (returned to callers; never raised)."""

    channel: str
    ok: bool
    attempts: int
    error: str | None = None


def webhooks_from_env(env: dict[str, str] | None = None) -> list[Webhook]:
    """The webhooks configured in the environment; a value that is not an http(s) URL is skipped
    with a warning that names the variable, not the value."""
    env = dict(os.environ) if env is None else env
    found = []
    for kind, name in WEBHOOK_ENV.items():
        url = env.get(name, "").strip()
        if not url:
            continue
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            log.warning("%s is set but is not an http(s) URL: no %s notifications", name, kind)
            continue
        found.append(Webhook(kind, url))
    return found


def payload_for(webhook: Webhook, message: Message) -> dict[str, object]:
    if webhook.kind == "slack":
        return slack_payload(message)
    if webhook.kind == "discord":
        return discord_payload(message)
    return generic_payload(message)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A webhook that redirects is answered as a failure: the payload is never sent to another address."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def _send(url: str, payload: dict[str, object], timeout_s: float) -> tuple[int, str | None]:
    """One POST: the status and the Retry-After header. urllib rather than httpx: httpx logs every
    request's full URL at INFO, and here the URL is the secret."""
    request = urllib.request.Request(url, data=json.dumps(payload).encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "promptly-notify"})
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            response.read()
            return int(response.status), None
    except urllib.error.HTTPError as err:
        with err:
            return int(err.code), err.headers.get("Retry-After")


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def post(webhook: Webhook, payload: dict[str, object], retry: Retry = Retry(),
         sleep: Callable[[float], None] = time.sleep) -> Delivery:
    """POST the payload with bounded retries: 5xx, 429 and network errors are retried; other 4xx
    (a malformed payload, a revoked webhook) and redirects are not, since asking again cannot help."""
    error = ""
    for attempt in range(1, retry.attempts + 1):
        wait = min(retry.backoff_s * 2 ** (attempt - 1), retry.max_wait_s)
        try:
            status, retry_after = _send(webhook.url, payload, retry.timeout_s)
            if 200 <= status < 300:
                return Delivery(webhook.kind, True, attempt)
            error = f"HTTP {status}"
            if 300 <= status < 500 and status != 429:
                return _failed(webhook, attempt, error)
            if status == 429 and (after := _seconds(retry_after)) is not None:
                wait = min(after, retry.max_wait_s)
        except (OSError, ValueError) as err:  # timeouts, refused connections, TLS: the text may hold the URL
            reason = getattr(err, "reason", err)
            error = f"{type(reason).__name__}: {redact_text(str(reason).replace(webhook.url, '***'))}"
        if attempt < retry.attempts:
            sleep(wait)
    return _failed(webhook, retry.attempts, error)


def _failed(webhook: Webhook, attempts: int, error: str) -> Delivery:
    log.warning("%s notification not delivered after %d attempt(s): %s", webhook, attempts, error)
    return Delivery(webhook.kind, False, attempts, error)


def in_github_actions(env: dict[str, str] | None = None) -> bool:
    env = dict(os.environ) if env is None else env
    return env.get("GITHUB_ACTIONS") == "true"


def write_github(message: Message, env: dict[str, str] | None = None) -> None:
    """The step summary (Markdown appended to $GITHUB_STEP_SUMMARY) and one annotation on stdout."""
    env = dict(os.environ) if env is None else env
    summary = env.get("GITHUB_STEP_SUMMARY")
    if summary:
        with Path(summary).open("a", encoding="utf-8") as f:
            f.write(summary_markdown(message))
    print(annotation(message), file=sys.stdout, flush=True)


def notify(message: Message, retry: Retry = Retry(), env: dict[str, str] | None = None) -> list[Delivery]:
    """Send a message everywhere configured; return what happened. Never raises (but KeyboardInterrupt)."""
    try:
        env = dict(os.environ) if env is None else env
        cleaned = message.clean()
        if cleaned.url is None and (url := github_run_url(env)):
            cleaned = replace(cleaned, url=url)
        deliveries = [post(w, payload_for(w, cleaned), retry) for w in webhooks_from_env(env)]
        if in_github_actions(env):
            write_github(cleaned, env)
        return deliveries
    except Exception as err:  # a notification is never worth a failed job
        log.warning("notification failed: %s", redact_text(f"{type(err).__name__}: {err}"))
        return []
