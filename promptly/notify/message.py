"""One notification, and its shape for each channel: Slack, Discord, a generic JSON webhook, and the
Markdown of a GitHub step summary.

Every text that leaves here has been through `redact_text`, and every field is cut to the channel's
documented limit, so a long traceback or a secret in an error message never makes a payload the
service rejects or a message that leaks.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from promptly.utils.markdown import markdown_table
from promptly.utils.redact import redact_text


class Event(StrEnum):
    """What happened to the job a message reports on."""

    start = "start"
    success = "success"
    failure = "failure"


_EMOJI = {Event.start: ":rocket:", Event.success: ":white_check_mark:", Event.failure: ":x:"}
_DISCORD_COLOUR = {Event.start: 0x3B82F6, Event.success: 0x22C55E, Event.failure: 0xEF4444}
MAX_METRICS = 10
"""Headline metrics shown per message (Slack allows 10 fields in a section)."""
LOG_TAIL_LINES = 30


@dataclass(frozen=True)
class Message:
    """A job's start, success or failure, as every channel shows it."""

    event: Event
    title: str
    """The job in a few words: `train experiment=smoke`, `ingest into Supabase`."""
    text: str = ""
    """One or two sentences of what happened."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Headline numbers (success): the first MAX_METRICS are shown, in this order."""
    url: str | None = None
    """A link to the run: the GitHub Actions run, a W&B run (filled from GITHUB_* when in Actions)."""
    run_dir: str | None = None
    """The run folder, for people who read the logs where the job ran."""
    error: str | None = None
    """The exception or failure reason (failure)."""
    log_tail: str | None = None
    """The last lines of the job's log (failure)."""
    details: str | None = None
    """Longer Markdown (a report's summary): whole in the step summary, cut short in webhooks."""

    def clean(self) -> Message:
        """The same message with every text redacted, metrics finite, and the log cut to its tail."""
        tail = redact_text(self.log_tail).rstrip().splitlines()[-LOG_TAIL_LINES:] if self.log_tail else None
        metrics = {redact_text(str(k)): float(v) for k, v in list(self.metrics.items())
                   if isinstance(v, int | float) and math.isfinite(float(v))}
        return Message(event=Event(self.event), title=redact_text(self.title), text=redact_text(self.text),
                       metrics=metrics, url=redact_text(self.url) if self.url else None,
                       run_dir=redact_text(self.run_dir) if self.run_dir else None,
                       error=redact_text(self.error) if self.error else None,
                       log_tail="\n".join(tail) if tail else None,
                       details=redact_text(self.details) if self.details else None)

    @property
    def headline(self) -> str:
        return f"{self.event.value}: {self.title}"


def github_run_url(env: dict[str, str] | None = None) -> str | None:
    """The Actions run's page, when running in GitHub Actions."""
    env = dict(os.environ) if env is None else env
    parts = [env.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")]
    return f"{parts[0]}/{parts[1]}/actions/runs/{parts[2]}" if all(parts) else None


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _number(value: float) -> str:
    return f"{value:.4g}"


def _summary_lines(m: Message) -> list[str]:
    lines = [m.text] if m.text else []
    if m.run_dir:
        lines.append(f"run: `{m.run_dir}`")
    if m.error:
        lines.append(f"error: {m.error}")
    return lines


def slack_payload(m: Message) -> dict[str, Any]:
    """An incoming-webhook body: `text` (the notification's fallback) and Block Kit blocks."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(m.headline, 150)}}]
    body = "\n".join(_summary_lines(m))
    if body:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(body, 3000)}})
    shown = list(m.metrics.items())[:MAX_METRICS]
    if shown:
        blocks.append({"type": "section", "fields": [
            {"type": "mrkdwn", "text": _cut(f"*{k}*\n{_number(v)}", 2000)} for k, v in shown]})
    if m.log_tail:
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": "```" + _cut(m.log_tail, 2900) + "```"}})
    if m.details:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(m.details, 3000)}})
    if m.url:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{m.url}|open the run>"}]})
    return {"text": f"{_EMOJI[m.event]} {_cut(m.headline, 300)}", "blocks": blocks}


def discord_payload(m: Message) -> dict[str, Any]:
    """An execute-webhook body: one embed (title, description, metric fields, colour by event)."""
    description = "\n".join(_summary_lines(m))
    if m.log_tail:
        description += "\n```\n" + _cut(m.log_tail, 1800) + "\n```"
    if m.details:
        description += "\n" + _cut(m.details, 1500)
    embed: dict[str, Any] = {"title": _cut(m.headline, 256), "description": _cut(description, 4096),
                             "color": _DISCORD_COLOUR[m.event],
                             "fields": [{"name": _cut(k, 256), "value": _number(v), "inline": True}
                                        for k, v in list(m.metrics.items())[:MAX_METRICS]],
                             "timestamp": datetime.now(UTC).isoformat()}
    if m.url:
        embed["url"] = m.url
    return {"username": "promptly", "content": _cut(m.headline, 2000), "embeds": [embed]}


def generic_payload(m: Message, env: dict[str, str] | None = None) -> dict[str, Any]:
    """A plain JSON body for any receiver: every field of the message, plus the GitHub context if any."""
    env = dict(os.environ) if env is None else env
    github = {k.removeprefix("GITHUB_").lower(): env[k] for k in
              ("GITHUB_REPOSITORY", "GITHUB_WORKFLOW", "GITHUB_RUN_ID", "GITHUB_REF", "GITHUB_SHA") if env.get(k)}
    return {"source": "promptly", "event": m.event.value, "title": m.title, "text": m.text,
            "metrics": m.metrics, "url": m.url, "run_dir": m.run_dir, "error": m.error,
            "log_tail": m.log_tail, "details": _cut(m.details, 8000) if m.details else None,
            "timestamp": datetime.now(UTC).isoformat(), "github": github or None}


def summary_markdown(m: Message) -> str:
    """The message as a block of GitHub-flavoured Markdown for $GITHUB_STEP_SUMMARY."""
    icon = {Event.start: "🚀", Event.success: "✅", Event.failure: "❌"}[m.event]
    out = [f"### {icon} {m.headline}", ""]
    out += [f"{line}  " for line in _summary_lines(m)]
    if m.metrics:
        out += ["", markdown_table(["metric", "value"], [(k, _number(v)) for k, v in m.metrics.items()])]
    if m.log_tail:
        out += ["", "<details><summary>log tail</summary>", "", "```", m.log_tail, "```", "", "</details>"]
    if m.details:
        out += ["", m.details]
    if m.url:
        out += ["", f"[open the run]({m.url})"]
    return "\n".join(out) + "\n\n"


def annotation(m: Message) -> str:
    """A workflow command line: `::error title=...::text` for a failure, `::notice ...` otherwise."""
    kind = "error" if m.event == Event.failure else "notice"
    body = m.error or m.text or m.title

    def escape(value: str, prop: bool = False) -> str:  # GitHub's escaping for workflow commands
        value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        return value.replace(":", "%3A").replace(",", "%2C") if prop else value

    return f"::{kind} title={escape(_cut(m.headline, 200), prop=True)}::{escape(_cut(body, 4000))}"
