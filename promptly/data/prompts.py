"""Prompt construction: a plain template or the tokenizer's chat template, split around the context.

The prompt is rendered once with a sentinel where the context goes and cut there into a prefix and a
suffix, so the encoder can shorten the context token by token and never touch the question, the
instructions or the answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from promptly.data.config import ChatTemplateUse, PromptConfig
from promptly.data.tables import linearize_tables
from promptly.errors import ConfigError

CONTEXT_SENTINEL = "\u2063PROMPTLY_CONTEXT\u2063"  # invisible separator: no template changes it


@dataclass(frozen=True)
class PromptParts:
    """`prefix + context + suffix` is the prompt; `answer_prefix + answer` follows it."""

    prefix: str
    suffix: str
    answer_prefix: str


def prompt_config(value: PromptConfig | Mapping[str, Any] | None) -> PromptConfig:
    """Accept the dataclass, a plain/DictConfig mapping (Hydra, or a run's saved config), or nothing (the
    defaults)."""
    if value is None:
        return PromptConfig()
    if isinstance(value, PromptConfig):
        return value
    fields = dict(value)
    fields.setdefault("tables", "markdown")  # saved before the option: that model saw tables as written
    if "chat_template" in fields:
        fields["chat_template"] = ChatTemplateUse(fields["chat_template"])
    return PromptConfig(**fields)


class PromptBuilder:
    """Renders prompts for one tokenizer; decides once whether its chat template is used."""

    def __init__(self, cfg: PromptConfig, tokenizer: Any) -> None:
        self.cfg = cfg
        self.tokenizer = tokenizer
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if cfg.chat_template == ChatTemplateUse.always and not has_template:
            raise ConfigError(
                "data.prompt.chat_template=always but the tokenizer has no chat template: "
                "use auto or never (then data.prompt.template is used)"
            )
        self.use_chat_template = has_template and cfg.chat_template != ChatTemplateUse.never
        template = cfg.user_template if self.use_chat_template else cfg.template
        name = "data.prompt.user_template" if self.use_chat_template else "data.prompt.template"
        if cfg.tables not in ("rows", "markdown"):
            raise ConfigError(f"data.prompt.tables must be rows or markdown, got {cfg.tables!r}")
        for field in ("{context}", "{question}"):
            if field not in template:
                raise ConfigError(f"{name} must contain {field}: {template!r}")

    def format_context(self, chunks: Sequence[Mapping[str, Any]]) -> str:
        """Retrieved chunks, best first, written with chunk_template (`{number}` counts from 1, as the
        citations do) and joined; tables as "column: value" rows unless `tables` is markdown."""
        rows = self.cfg.tables == "rows"
        return self.cfg.chunk_separator.join(
            self.cfg.chunk_template.format(**{"title": c.get("document_id", ""), **c, "number": n,
                                              "content": linearize_tables(c["content"]) if rows else c["content"]})
            for n, c in enumerate(chunks, start=1))

    def parts(self, question: str) -> PromptParts:
        """Prefix and suffix of the prompt around the context, for this question."""
        if self.use_chat_template:
            messages = []
            if self.cfg.system:
                messages.append({"role": "system", "content": self.cfg.system})
            user = self.cfg.user_template.format(context=CONTEXT_SENTINEL, question=question)
            messages.append({"role": "user", "content": user})
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            answer_prefix = ""
        else:
            text = self.cfg.template.format(system=self.cfg.system, context=CONTEXT_SENTINEL, question=question)
            answer_prefix = self.cfg.answer_prefix
        if text.count(CONTEXT_SENTINEL) != 1:
            raise ConfigError("the prompt template must place {context} exactly once")
        prefix, suffix = text.split(CONTEXT_SENTINEL)
        return PromptParts(prefix=prefix, suffix=suffix, answer_prefix=answer_prefix)
