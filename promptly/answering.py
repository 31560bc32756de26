"""The RAG answer path: retrieve, build the prompt, generate, cite. One path for `promptly ask`,
evaluation, the server and the bias probes, so an answer does not depend on who asked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from promptly.data.encoding import ExampleEncoder
from promptly.data.prompts import PromptBuilder
from promptly.errors import EmptyInputError
from promptly.evidence import EvidencedAnswer, EvidencePlan, SentenceEncoder, abstention, extractive, generative, plan
from promptly.model.generation import SamplingConfig, TokenCallback, generate
from promptly.model.loading import LoadedModel
from promptly.records import Answer, Citation
from promptly.retrieval import ContextChunk, Retriever
from promptly.settings import AnswerStyle, EvidenceSettings


@dataclass(frozen=True)
class PreparedQuestion:
    """A question with its retrieved context, rendered into prompt tokens."""

    question: str
    chunks: tuple[ContextChunk, ...]
    """The chunks the prompt shows (whole or in part), best first."""
    prompt_ids: list[int]
    context_cut: int
    """Context tokens cut so that prompt and answer fit max_length."""


class Answerer:
    """A loaded model, a retriever and sampling settings, answering questions with citations."""

    def __init__(self, loaded: LoadedModel, retriever: Retriever, sampling: SamplingConfig,
                 evidence: EvidenceSettings | None = None) -> None:
        self.loaded, self.retriever, self.sampling = loaded, retriever, sampling
        self.evidence = evidence or EvidenceSettings()
        self.builder = PromptBuilder(loaded.prompt, loaded.tokenizer)
        self.encoder = ExampleEncoder(loaded.tokenizer, self.builder, loaded.max_length)

    def prepare(self, questions: Sequence[str], filter: dict[str, Any] | None = None,
                k: int | None = None) -> list[PreparedQuestion]:
        """Retrieve each question's context and render its prompt (room left for max_new_tokens)."""
        for q in questions:
            if not q.strip():
                raise EmptyInputError("the question is empty")
        out = []
        for question, chunks in zip(questions, self.retriever.search(questions, filter=filter, k=k), strict=True):
            out.append(self.render(question, chunks))
        return out

    def render(self, question: str, chunks: Sequence[ContextChunk]) -> PreparedQuestion:
        """The prompt of a question with a given context (chunks the prompt has no room for are dropped)."""
        context = self.builder.format_context(chunks)
        ids, cut = self.encoder.prompt_ids(question, context, reserve=self.sampling.max_new_tokens)
        shown = list(chunks)
        if cut:  # keep the chunks that still have tokens in the prompt
            kept_tokens = self._tokens(context) - cut
            while len(shown) > 1 and self._tokens(self.builder.format_context(shown[:-1])) >= kept_tokens:
                shown.pop()
        return PreparedQuestion(question=question, chunks=tuple(shown), prompt_ids=ids, context_cut=cut)

    def _tokens(self, text: str) -> int:
        return len(self.encoder.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(self, prepared: Sequence[PreparedQuestion], on_token: TokenCallback | None = None,
                 on_batch: Callable[[int], None] | None = None) -> list[str]:
        return generate(self.loaded.model, self.loaded.tokenizer, [p.prompt_ids for p in prepared], self.sampling,
                        on_token=on_token, on_batch=on_batch)

    def answer(self, questions: Sequence[str], filter: dict[str, Any] | None = None,
               on_token: TokenCallback | None = None) -> list[Answer]:
        """Answers with their citations (every chunk the prompt showed, numbered as it showed them) and their
        evidence; nothing is generated for a question that abstains or is answered extractively."""
        started = time.perf_counter()
        prepared = self.prepare(questions, filter=filter)
        answers = self.answer_prepared(prepared, on_token=on_token)
        seconds = (time.perf_counter() - started) / max(len(questions), 1)
        return [replace(a, seconds=seconds) for a in answers]

    def plans(self, prepared: Sequence[PreparedQuestion]) -> list[EvidencePlan]:
        return [plan(p.question, p.chunks, self.retriever.embedder, self.evidence) for p in prepared]

    def answer_prepared(self, prepared: Sequence[PreparedQuestion], on_token: TokenCallback | None = None,
                        on_batch: Callable[[int], None] | None = None) -> list[Answer]:
        """`answer` for questions already prepared (evaluation prepares them first)."""
        plans = self.plans(prepared)
        to_generate = [i for i, pl in enumerate(plans) if needs_generation(pl, self.evidence)]
        # on_token's index is the question's among all of them, not among those generated
        relay = None if on_token is None else (lambda row, token: on_token(to_generate[row], token))
        texts = dict(zip(to_generate, self.generate([prepared[i] for i in to_generate], on_token=relay,
                                                    on_batch=on_batch) if to_generate else [], strict=True))
        if on_batch is not None and len(prepared) > len(to_generate):
            on_batch(len(prepared) - len(to_generate))
        out = []
        for i, (p, pl) in enumerate(zip(prepared, plans, strict=True)):
            ev = with_evidence(p.question, texts.get(i), pl, self.retriever.embedder, self.evidence)
            out.append(Answer(question=p.question, text=ev.text, citations=citations(p.chunks), model=self.loaded.name,
                              seconds=0.0, evidence=ev.evidence, abstained=ev.abstained, style=ev.style,
                              support=ev.support))
        return out


def needs_generation(p: EvidencePlan, settings: EvidenceSettings) -> bool:
    """Whether the model must write this answer (not when it abstains or quotes)."""
    return not p.abstain and settings.answer_style == AnswerStyle.generative


def with_evidence(question: str, generated: str | None, p: EvidencePlan, encoder: SentenceEncoder,
                  settings: EvidenceSettings) -> EvidencedAnswer:
    """The final answer of a question: abstention, quoted sentences, or the generated text marked."""
    if p.abstain:
        return abstention(question, p, str(settings.answer_style))
    if settings.answer_style == AnswerStyle.extractive or generated is None:
        return extractive(question, p, settings)
    return generative(question, generated, p, encoder, settings)


def citations(chunks: Sequence[ContextChunk]) -> tuple[Citation, ...]:
    return tuple(Citation(number=n, chunk_id=c["chunk_id"], document_id=c["document_id"], ordinal=int(c["ordinal"]),
                          title=str(c.get("title") or c["document_id"]), score=c.get("score"))
                 for n, c in enumerate(chunks, start=1))
