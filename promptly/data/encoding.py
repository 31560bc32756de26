"""Token-level examples: prompt tokens (masked from the loss) followed by supervised tokens.

Too-long `rag_qa` examples lose context tokens from the end (the lowest-ranked chunks), never the
question, the instructions or the answer; an example whose answer cannot fit at all is dropped.
Both are counted, so a run can say how much context its max_length cost.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from promptly.data.prompts import PromptBuilder
from promptly.errors import ConfigError


@dataclass(frozen=True)
class Encoded:
    """input_ids[:prompt_len] are the prompt (labelled IGNORE_INDEX by the collator); the rest are supervised."""

    input_ids: list[int]
    prompt_len: int
    context_cut: int = 0
    """Context tokens removed to fit max_length."""


@dataclass
class EncodeStats:
    """What encoding one split cost."""

    examples: int = 0
    dropped: int = 0
    """Examples whose answer (with the fixed part of the prompt) alone exceeds max_length."""
    context_truncated: int = 0
    """Examples that lost context tokens."""
    context_tokens_cut: int = 0
    tokens: int = 0
    supervised_tokens: int = 0

    def add(self, enc: Encoded) -> None:
        self.examples += 1
        self.tokens += len(enc.input_ids)
        self.supervised_tokens += len(enc.input_ids) - enc.prompt_len
        if enc.context_cut:
            self.context_truncated += 1
            self.context_tokens_cut += enc.context_cut

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class ExampleEncoder:
    """Tokenizes prompts and answers for one tokenizer and one max_length."""

    tokenizer: Any
    builder: PromptBuilder | None
    max_length: int
    add_bos: bool = field(init=False)

    def __post_init__(self) -> None:
        if self.tokenizer.eos_token_id is None:
            raise ConfigError("the tokenizer has no eos token: answers could never end")
        chat = self.builder is not None and self.builder.use_chat_template
        # Chat templates write their own begin-of-text marker (if the model has one) into the text.
        self.add_bos = not chat and self.tokenizer.bos_token_id is not None

    def _tok(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        out: list[list[int]] = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return out

    def _bos(self) -> list[int]:
        return [int(self.tokenizer.bos_token_id)] if self.add_bos else []

    def prompt_ids(self, question: str, context: str, reserve: int = 0) -> tuple[list[int], int]:
        """The prompt alone (for generation), its context shortened to leave `reserve` tokens free."""
        assert self.builder is not None
        parts = self.builder.parts(question)
        prefix, ctx, suffix = self._tok([parts.prefix, context, parts.suffix])
        prefix = self._bos() + prefix
        budget = self.max_length - reserve - len(prefix) - len(suffix)
        if budget < 0:
            raise ConfigError(f"the prompt of {question[:60]!r} does not fit in {self.max_length} tokens")
        cut = max(0, len(ctx) - budget)
        return prefix + ctx[: len(ctx) - cut] + suffix, cut

    def encode_qa(self, question: str, context: str, answer: str) -> Encoded | None:
        """Prompt + answer + eos; None when even an empty context leaves no room for the answer."""
        assert self.builder is not None
        parts = self.builder.parts(question)
        prefix, ctx, suffix, ans = self._tok([parts.prefix, context, parts.suffix, parts.answer_prefix + answer])
        prefix = self._bos() + prefix
        ans = [*ans, int(self.tokenizer.eos_token_id)]
        budget = self.max_length - len(prefix) - len(suffix) - len(ans)
        if budget < 0:
            return None
        cut = max(0, len(ctx) - budget)
        prompt = prefix + ctx[: len(ctx) - cut] + suffix
        return Encoded(input_ids=prompt + ans, prompt_len=len(prompt), context_cut=cut)

    def encode_text(self, text: str) -> Iterator[Encoded]:
        """Continued pre-training: bos + text + eos in windows of max_length (the first token of each
        window is context only, as it would be in an unpacked batch)."""
        ids = self._bos() + self._tok([text])[0] + [int(self.tokenizer.eos_token_id)]
        step = self.max_length
        for start in range(0, len(ids), step):
            window = ids[start : start + step]
            if len(window) >= 2:
                yield Encoded(input_ids=window, prompt_len=1)
