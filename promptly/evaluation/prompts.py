"""Evaluation sequences: a question's prompt (retrieved context, never the reference answer) followed
by the reference answer, for the reference answers' perplexity."""

from __future__ import annotations

from collections.abc import Sequence

from promptly.answering import PreparedQuestion
from promptly.data.encoding import ExampleEncoder


def reference_sequences(prepared: Sequence[PreparedQuestion], references: Sequence[str],
                        encoder: ExampleEncoder) -> list[tuple[list[int], int]]:
    """Prompt + reference answer + eos for each example, with the prompt's length."""
    assert encoder.builder is not None
    out = []
    for p, reference in zip(prepared, references, strict=True):
        answer = encoder.builder.parts(p.question).answer_prefix + reference
        answer_ids = encoder.tokenizer(answer, add_special_tokens=False)["input_ids"]
        seq = [*p.prompt_ids, *answer_ids, int(encoder.tokenizer.eos_token_id)]
        out.append((seq, len(p.prompt_ids)))
    return out
