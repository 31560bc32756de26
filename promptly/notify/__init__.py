"""Notifications of a job's start, success and failure: Slack, Discord and generic JSON webhooks (URLs from
the environment), GitHub's step summary and annotations in Actions; `python -m promptly.notify` for
workflows, `promptly.notify.callback.NotifyCallback` for training. Nothing here imports torch."""

from promptly.notify.channels import WEBHOOK_ENV, Delivery, Retry, Webhook, notify, webhooks_from_env
from promptly.notify.message import Event, Message

__all__ = ["WEBHOOK_ENV", "Delivery", "Event", "Message", "Retry", "Webhook", "notify", "webhooks_from_env"]
