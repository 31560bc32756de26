"""Chat models promptly talks to, shared by `qa_generator` and the bias judges: any OpenAI-compatible
endpoint (the official `openai` client) or a causal LM run in this process.

Both take chat messages and a per-request seed and return the reply text. The local client also reads
the model's next-token probabilities, which the local judge scores with (no text parsing). Secrets come
from the environment variable named by `api_key_env`, never from configs saved with runs.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

from promptly.errors import RemoteServiceError

Messages = Sequence[Mapping[str, str]]


class LLMClientError(RemoteServiceError):
    """One request failed (the endpoint errored, or the prompt does not fit the model)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        """The endpoint's HTTP status, when it answered with an error (401: the key was refused)."""


class OpenAIChatClient:
    """Chat completions through the official `openai` client: OpenAI, vLLM, Ollama, llama.cpp server.

    The client retries timeouts, 429s and 5xx replies `max_retries` times with exponential backoff and
    jitter. The key is read from the environment variable named by `api_key_env`; local servers accept
    any key, so with a `base_url` and no key set a placeholder is sent. `setting` names the config node
    in messages (`qa_generator`, `judge`).
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        temperature: float = 0.0,
        top_p: float | None = None,
        max_tokens: int = 1024,
        json_mode: bool = True,
        timeout: float = 120.0,
        max_retries: int = 2,
        concurrency: int = 8,
        setting: str = "qa_generator",
    ) -> None:
        if not model:
            raise ValueError(f"{setting}.model is empty: name the model the endpoint serves")
        if concurrency < 1:
            raise ValueError(f"{setting}.concurrency must be at least 1, got {concurrency}")
        self.concurrency = concurrency
        self._client_lock = threading.Lock()
        self.model, self.base_url = model, base_url or None
        self.api_key_env, self.setting = api_key_env, setting
        self.temperature, self.top_p, self.max_tokens = temperature, top_p, max_tokens
        self.json_mode, self.timeout, self.max_retries = json_mode, timeout, max_retries
        self.name = f"openai_compatible:{model}"

    @cached_property
    def client(self) -> Any:
        """One client (thread-safe, with its connection pool) shared by the concurrent requests."""
        from openai import OpenAI

        with self._client_lock:  # cached_property has no lock of its own: the first requests race here
            if "_openai" not in self.__dict__:
                key = os.environ.get(self.api_key_env, "")
                if not key and self.base_url is None:
                    raise ValueError(f"set {self.api_key_env} (or {self.setting}.base_url for a local server)")
                self.__dict__["_openai"] = OpenAI(base_url=self.base_url, api_key=key or "not-needed",
                                                  timeout=self.timeout, max_retries=self.max_retries)
            return self.__dict__["_openai"]

    def generate(self, messages: Messages, seed: int) -> str:
        import openai

        kwargs: dict[str, Any] = {"model": self.model, "messages": [dict(m) for m in messages],
                                  "temperature": self.temperature, "max_tokens": self.max_tokens, "seed": seed}
        if self.top_p is not None:
            kwargs["top_p"] = self.top_p
        if self.json_mode:
            kwargs["response_format"] = {"type": "json_object"}
        try:
            response = self.client.chat.completions.create(**kwargs)
        except openai.APIError as err:
            raise LLMClientError(f"{type(err).__name__} from {self.base_url or 'OpenAI'}: {err}",
                                 status=getattr(err, "status_code", None)) from None
        if not response.choices:
            raise LLMClientError(f"{self.base_url or 'OpenAI'} returned no choices")
        return response.choices[0].message.content or ""


class LocalHFClient:
    """A causal LM run in this process.

    `model` is either a ModelFactory (what `model=...` configs instantiate: it builds the tokenizer and
    the model on first use) or, with `tokenizer` given, a model object that is already loaded.
    Prompts go through the tokenizer's chat template when it has one, else the messages are joined.
    `stop` ends a reply at the first of these strings (kept in the reply), so a one-line answer costs
    no more tokens than it has; `inference_dtype` (auto: bfloat16 where native) casts the loaded model.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        max_new_tokens: int = 512,
        temperature: float = 0.0,
        top_p: float = 1.0,
        device: str | None = None,
        stop: Sequence[str] | None = None,
        inference_dtype: str | None = None,
    ) -> None:
        self._source, self._tokenizer = model, tokenizer
        self.stop = list(stop) if stop else None
        self.inference_dtype = inference_dtype
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.device = device
        self.name = f"local_hf:{getattr(model, 'name_or_path', type(model).__name__)}"
        self.concurrency = 1  # one model in this process, one request at a time

    @cached_property
    def tokenizer(self) -> Any:
        return self._tokenizer if self._tokenizer is not None else self._source.load_tokenizer()

    @cached_property
    def model(self) -> Any:
        import torch

        model = self._source if self._tokenizer is not None else self._source.build(with_peft=False)
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = model.to(device)
        if self.inference_dtype is not None:
            from promptly.model.loading import inference_dtype

            model = model.to(dtype=inference_dtype(self.inference_dtype))
        return model.eval()

    @property
    def max_positions(self) -> int | None:
        return getattr(self.model.config, "max_position_embeddings", None)

    def render_prompt(self, messages: Messages) -> str:
        """The text the model continues: its chat template, or the messages joined by blank lines."""
        if getattr(self.tokenizer, "chat_template", None):
            return str(self.tokenizer.apply_chat_template([dict(m) for m in messages], tokenize=False,
                                                          add_generation_prompt=True))
        return "\n\n".join(m["content"] for m in messages) + "\n"

    def prompt_ids(self, messages: Messages, suffix: str = "") -> list[int]:
        """Token ids of the rendered prompt (plus `suffix`, e.g. the start of the assistant's reply)."""
        return list(self.tokenizer(self.render_prompt(messages) + suffix, add_special_tokens=False)["input_ids"])

    def generate(self, messages: Messages, seed: int) -> str:
        """One reply through promptly's one generate (model/generation.py), so a judge or a QA generator
        decodes exactly as evaluation and the server do; `seed` seeds sampling (temperature > 0)."""
        from promptly.model.config import SamplingConfig
        from promptly.model.generation import generate

        ids = self.prompt_ids(messages)
        limit = self.max_positions
        if limit and len(ids) + self.max_new_tokens > limit:
            raise LLMClientError(f"prompt of {len(ids)} tokens + max_new_tokens={self.max_new_tokens} "
                                 f"exceeds the model's {limit} positions")
        sample = self.temperature > 0
        sampling = SamplingConfig(batch_size=1, max_new_tokens=self.max_new_tokens, do_sample=sample, seed=seed,
                                  **({"temperature": self.temperature, "top_p": self.top_p} if sample else {}))
        return generate(self.model, self.tokenizer, [ids], sampling, stop_strings=self.stop or ())[0]

    def next_token_probs(self, prompt_ids: Sequence[int]) -> Any:
        """The model's probability of every vocabulary token right after `prompt_ids` (one forward pass,
        no sampling: deterministic), as a float64 CPU tensor."""
        import torch

        limit = self.max_positions
        if limit and len(prompt_ids) > limit:
            raise LLMClientError(f"prompt of {len(prompt_ids)} tokens exceeds the model's {limit} positions")
        ids = torch.tensor([list(prompt_ids)], device=self.model.device)
        with torch.no_grad():
            logits = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits
        return torch.softmax(logits[0, -1].double().cpu(), dim=-1)
