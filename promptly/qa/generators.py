"""Models that write question/answer pairs: any OpenAI-compatible endpoint, or a local Hugging Face model.

Both take chat messages and a per-request seed and return the reply text; `qa_generator=...` picks one.
The clients live in promptly/llm_clients.py, shared with the bias judges; here they carry the names
the `qa_generator` configs use.
Deterministic where the backend allows: temperature 0 (greedy) by default, and the seed of each request
derived from the chunk, so a re-run asks the same question of the same chunk the same way.
"""

from __future__ import annotations

from typing import Protocol

from promptly.llm_clients import LLMClientError, LocalHFClient, Messages, OpenAIChatClient

GeneratorError = LLMClientError
"""One request failed (the endpoint errored, or the prompt does not fit the model)."""


class QAGenerator(Protocol):
    """What `promptly qa generate` needs from a generator (which may also name a `default_mode`: what
    `qa.mode=auto` resolves to with it; answer_first when it names none)."""

    name: str
    concurrency: int
    """Requests it may have in flight at once (1: one after another)."""

    def generate(self, messages: Messages, seed: int) -> str:
        """The model's reply to the chat `messages`."""
        ...


class OpenAICompatibleGenerator(OpenAIChatClient):
    """`qa_generator=openai_compatible`: promptly.llm_clients.OpenAIChatClient (messages name `qa_generator`)."""

    default_mode = "full_pair"
    """What `qa.mode=auto` means with it: a strong model writes whole pairs."""


class LocalHFGenerator(LocalHFClient):
    """`qa_generator=local_hf`: promptly.llm_clients.LocalHFClient."""

    default_mode = "answer_first"
    """What `qa.mode=auto` means with it: a small model only writes questions for given answers."""


__all__ = ["GeneratorError", "LocalHFGenerator", "Messages", "OpenAICompatibleGenerator", "QAGenerator"]
