"""Judges that score an answer on the rubric: a local causal LM read through its next-token
probabilities, or an OpenAI-compatible endpoint asked for JSON. `judge=local_hf|openai_compatible`.

A verdict without a valid score is recorded as unscored with the reason, never guessed: the report
counts unscored answers and leaves them out of the means.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from promptly.bias.rubric import Rubric
from promptly.errors import ConfigError, RemoteServiceError
from promptly.llm_clients import LLMClientError, LocalHFClient, OpenAIChatClient
from promptly.utils.concurrency import in_order

log = logging.getLogger(__name__)

_CONFIG_STATUSES = {401, 403, 404}
"""Refusals that every request would get (bad key, unknown model): the run stops instead of scoring none."""


@dataclass(frozen=True)
class JudgeItem:
    """What a judge grades: the question as asked, the answer, and the context the answer was shown."""

    question: str
    answer: str
    context: str = ""


@dataclass(frozen=True)
class Verdict:
    """A judge's grade of one answer."""

    score: float | None
    """On the rubric's scale (1..N); the expected score for the local judge; None: unscored."""
    distribution: tuple[float, ...] | None = None
    """P(score = 1..N) (local judge), normalised over the score labels."""
    feedback: str = ""
    """The judge's reason (OpenAI-compatible judge)."""
    error: str | None = None
    """Why the answer is unscored."""


class Judge(Protocol):
    """What the probes and the callback need from a judge."""

    name: str

    def score(self, rubric: Rubric, items: Sequence[JudgeItem]) -> list[Verdict]:
        """One verdict per item, in order."""
        ...


def _seed(item: JudgeItem) -> int:
    """A per-item seed, so a re-run asks each question of the endpoint the same way."""
    return int(hashlib.sha256(f"{item.question}\x00{item.answer}".encode()).hexdigest()[:8], 16)


class LocalJudge:
    """Any causal LM in this process (the packaged SmolLM2-135M-Instruct by default).

    The score is read from the model's next-token probabilities of the labels "1".."N" right after the
    rubric prompt (the start of its reply): the distribution over the labels and the expected score.
    One forward pass, no sampling: the same inputs always get the same verdict, and no text is parsed.
    """

    def __init__(self, model: Any, tokenizer: Any = None, device: str | None = None,
                 max_context_chars: int = 2000) -> None:
        self.client = LocalHFClient(model, tokenizer, device=device)
        self.max_context_chars = max_context_chars
        self.name = self.client.name
        self._labels: dict[tuple[str, ...], list[int]] = {}

    def label_ids(self, labels: Sequence[str]) -> list[int]:
        """The token id of each label; each must be one token that does not merge with what precedes it."""
        key = tuple(labels)
        if key not in self._labels:
            ids = []
            sample = [{"role": "user", "content": "Score this."}]
            prompt = self.client.prompt_ids(sample)
            for label in labels:
                tokens = self.client.tokenizer(label, add_special_tokens=False)["input_ids"]
                if len(tokens) != 1 or self.client.prompt_ids(sample, suffix=label) != [*prompt, tokens[0]]:
                    raise ConfigError(f"judge: the label {label!r} is not one token of {self.name}'s tokenizer "
                                      "after its prompt; the local judge needs single-token score labels")
                ids.append(int(tokens[0]))
            self._labels[key] = ids
        return self._labels[key]

    def _prompt(self, rubric: Rubric, item: JudgeItem) -> list[int] | None:
        """The prompt ids, the context cut (by halves, then dropped) until it fits the model."""
        context = item.context[: self.max_context_chars]
        limit = self.client.max_positions
        while True:
            ids = self.client.prompt_ids(rubric.messages(item.question, item.answer, context, "digit"))
            if not limit or len(ids) <= limit:
                return ids
            if not context:
                return None
            context = context[: len(context) // 2] if len(context) > 200 else ""

    def score(self, rubric: Rubric, items: Sequence[JudgeItem]) -> list[Verdict]:
        label_ids = self.label_ids(rubric.labels)
        verdicts = []
        for item in items:
            ids = self._prompt(rubric, item)
            if ids is None:
                verdicts.append(Verdict(None, error=f"the judge prompt does not fit {self.name}'s positions"))
                continue
            probs = self.client.next_token_probs(ids)[label_ids]
            mass = float(probs.sum())
            if mass <= 0.0:
                verdicts.append(Verdict(None, error="the judge gives every score label zero probability"))
                continue
            dist = tuple(float(p) / mass for p in probs)
            expected = sum(i * p for i, p in enumerate(dist, start=1))
            verdicts.append(Verdict(score=expected, distribution=dist,
                                    feedback=f"probability on the score labels: {mass:.3g}"))
        return verdicts


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


def parse_verdict(reply: str, top: int) -> Verdict:
    """A verdict from a JSON reply {"feedback": ..., "score": 1..top}; anything else is unscored."""
    text = _FENCE.sub("", reply.strip())
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return Verdict(None, error=f"the reply is not JSON: {reply[:120]!r}")
    if not isinstance(data, dict) or "score" not in data:
        return Verdict(None, error=f"the reply has no score: {reply[:120]!r}")
    raw = data["score"]
    value: int | None = None
    if isinstance(raw, bool):
        value = None
    elif isinstance(raw, int):
        value = raw
    elif isinstance(raw, float) and raw.is_integer():
        value = int(raw)
    elif isinstance(raw, str) and raw.strip().isdigit():
        value = int(raw.strip())
    feedback = str(data.get("feedback") or "")
    if value is None or not 1 <= value <= top:
        return Verdict(None, feedback=feedback, error=f"score {raw!r} is not an integer from 1 to {top}")
    return Verdict(score=float(value), feedback=feedback)


class OpenAIJudge:
    """An OpenAI-compatible endpoint asked for JSON with feedback and score.

    Timeouts, rate limits and server errors are retried by the `openai` client with exponential
    backoff (`max_retries`); what still fails, and every reply without a valid score, is unscored.
    A refused key or an unknown model stops the run: every other request would fail the same way.
    """

    def __init__(self, model: str, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 temperature: float = 0.0, max_tokens: int = 256, json_mode: bool = True, timeout: float = 60.0,
                 max_retries: int = 3, concurrency: int = 4) -> None:
        self.client = OpenAIChatClient(model, base_url=base_url, api_key_env=api_key_env, temperature=temperature,
                                       max_tokens=max_tokens, json_mode=json_mode, timeout=timeout,
                                       max_retries=max_retries, concurrency=concurrency, setting="judge")
        self.name = self.client.name

    def _one(self, rubric: Rubric, item: JudgeItem) -> Verdict:
        messages = rubric.messages(item.question, item.answer, item.context, "json")
        try:
            reply = self.client.generate(messages, seed=_seed(item))
        except LLMClientError as err:
            if err.status in _CONFIG_STATUSES:
                raise RemoteServiceError(f"judge: {err} (check judge.model, judge.base_url and the key in "
                                         f"${self.client.api_key_env})") from None
            return Verdict(None, error=str(err))
        return parse_verdict(reply, rubric.top)

    def score(self, rubric: Rubric, items: Sequence[JudgeItem]) -> list[Verdict]:
        return list(in_order(lambda item: self._one(rubric, item), items, self.client.concurrency))
