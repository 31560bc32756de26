"""Evaluation prompts: the question and the retrieved context, never the reference answer."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from promptly.data.encoding import ExampleEncoder
from promptly.data.sources import iter_rag_examples
from promptly.records import Chunk, QAPair
from promptly.store.base import ChunkStore


@dataclass(frozen=True)
class EvalPrompt:
    """What the model sees for one test question, and what it is scored against."""

    pair: QAPair
    prompt_ids: list[int]
    contexts: tuple[str, ...]
    retrieved_chunk_ids: tuple[str, ...]
    context_cut: int


def chunk_id(fields: dict[str, Any]) -> str:
    """The stored id of a retrieved chunk (ids are derived from document, ordinal and text)."""
    return Chunk(document_id=fields["document_id"], ordinal=int(fields["ordinal"]), content=fields["content"],
                 token_count=0).id


def build_eval_prompts(pairs: Iterable[QAPair], store: ChunkStore, embedder: Any, encoder: ExampleEncoder,
                       k: int, mode: str, reserve: int) -> list[EvalPrompt]:
    """Retrieve top-k chunks for each question (no gold chunk is slipped in) and render the prompt.

    The reference answer is not an input here: a prompt depends on the question and the store only.
    `reserve` tokens are left free for the answer, so long contexts are cut, never the question.
    """
    assert encoder.builder is not None
    out = []
    for example in iter_rag_examples(store, embedder.embed_queries, iter(pairs), k=k, mode=mode, include_gold=False):
        context = encoder.builder.format_context(list(example.chunks))
        ids, cut = encoder.prompt_ids(example.pair.question, context, reserve=reserve)
        out.append(EvalPrompt(pair=example.pair, prompt_ids=ids,
                              contexts=tuple(c["content"] for c in example.chunks),
                              retrieved_chunk_ids=tuple(chunk_id(c) for c in example.chunks), context_cut=cut))
    return out


def reference_sequences(prompts: Sequence[EvalPrompt], encoder: ExampleEncoder) -> list[tuple[list[int], int]]:
    """Prompt + reference answer + eos for each example, for the reference answers' perplexity."""
    out = []
    for p in prompts:
        assert encoder.builder is not None
        answer = encoder.builder.parts(p.pair.question).answer_prefix + p.pair.answer
        answer_ids = encoder.tokenizer(answer, add_special_tokens=False)["input_ids"]
        seq = [*p.prompt_ids, *answer_ids, int(encoder.tokenizer.eos_token_id)]
        out.append((seq, len(p.prompt_ids)))
    return out
