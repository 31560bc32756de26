"""Settings of `promptly qa` (light to import: the entry config's schema registers them at start-up)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from promptly.errors import ConfigError
from promptly.ingest.splits import SplitConfig
from promptly.records import Chunk

Messages = Sequence[Mapping[str, str]]
DEFAULT_SYSTEM = ("You write question/answer pairs for training a documentation assistant. Every answer must be "
                  "stated by the passage; never add facts. Reply with JSON only.")
DEFAULT_USER = ('Document: {title}\nSection: {section}\n\nPassage:\n"""\n{context}\n"""\n\n'
                "Write {n} different questions a user of this software could ask that the passage answers, each "
                "with a one- or two-sentence answer taken from the passage. Reply with JSON of the form "
                '{"pairs": [{"question": "...", "answer": "..."}]}.')
_FIELD = re.compile(r"\{(title|section|context|n|document_id)\}")
DEFAULT_QUESTION_SYSTEM = "You write one question about software documentation."
DEFAULT_QUESTION_USER = ("Document: {title}\nSection: {section}\n\nText: {answer}\n\nWrite the question this text "
                         "answers. Name {title} in the question. Reply with the question only.")
_QUESTION_FIELD = re.compile(r"\{(title|section|answer|header|context|document_id)\}")
MODES = ("auto", "answer_first", "full_pair")


@dataclass
class LocalHFGeneratorConfig:
    """`qa_generator=local_hf`: a causal LM in this process (the packaged SmolLM2 by default)."""

    _target_: str = "promptly.qa.generators.LocalHFGenerator"
    model: Any = None
    """A model option (configs/model)."""
    max_new_tokens: int = 48
    """Tokens per reply: a question for answer_first (full_pair needs ~512)."""
    stop: list[str] | None = None
    """End the reply at the first of these (null: only at max_new_tokens or the end of turn)."""
    temperature: float = 0.0
    """0: greedy; above 0 samples with the per-request seed."""
    top_p: float = 1.0
    device: str | None = None
    """null: cuda when available, else cpu."""
    inference_dtype: str = "auto"
    """bfloat16 where native (AVX512-BF16, AMX, CUDA), else float32; or float32 / bfloat16."""


@dataclass
class OpenAICompatibleGeneratorConfig:
    """`qa_generator=openai_compatible`: any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp)."""

    _target_: str = "promptly.qa.generators.OpenAICompatibleGenerator"
    model: str = "gpt-4o-mini"
    """The endpoint's model name."""
    base_url: str | None = None
    """null: api.openai.com."""
    api_key_env: str = "OPENAI_API_KEY"
    """The environment variable holding the key (the key itself is never in a config)."""
    temperature: float = 0.0
    top_p: float | None = None
    max_tokens: int = 1024
    json_mode: bool = True
    """response_format={"type": "json_object"}; false for servers without it."""
    timeout: float = 120.0
    """Seconds per request."""
    max_retries: int = 2
    concurrency: int = 8
    """Requests in flight at once (vLLM and llama.cpp batch them; lower it for rate limits)."""


@dataclass
class PromptConfig:
    """The messages sent for one chunk (`qa.prompt`); {title} {section} {context} {n} {document_id}."""

    system: str = DEFAULT_SYSTEM
    user: str = DEFAULT_USER

    def __post_init__(self) -> None:
        if "{context}" not in self.user:
            raise ConfigError("qa.prompt.user must contain {context}")

    def messages(self, chunk: Chunk, n: int) -> Messages:
        """Only the named fields are filled in, so the JSON example in a prompt needs no escaping."""
        path = chunk.metadata.get("heading_path") or []
        values = {"title": str(chunk.metadata.get("title") or chunk.document_id), "context": chunk.content,
                  "section": " > ".join(path) if isinstance(path, list) else str(path), "n": str(n),
                  "document_id": chunk.document_id}
        user = _FIELD.sub(lambda m: values[m.group(1)], self.user)
        return ([{"role": "system", "content": self.system}] if self.system else []) + [
            {"role": "user", "content": user}]


@dataclass
class QuestionExample:
    """A worked example shown before the real request (few-shot): the user turn's fields and its question."""

    title: str = ""
    section: str = ""
    answer: str = ""
    question: str = ""
    header: str = ""


@dataclass
class QuestionPromptConfig:
    """The messages that ask for the question of one answer span (`qa.answer_first.prompt`).

    Fields: {title} {section} (the span's nearest heading, else the chunk's path) {answer} (the span)
    {header} (a table row's header row, else empty) {context} (the whole chunk) {document_id}.
    `examples` come first as earlier turns of the chat (the user's text filled from the example, the
    example's question as the reply): a small model copies their form ("How long does ...?") instead
    of asking "What is the purpose of X?".
    """

    system: str = DEFAULT_QUESTION_SYSTEM
    user: str = DEFAULT_QUESTION_USER
    examples: list[QuestionExample] = field(default_factory=list)

    def __post_init__(self) -> None:
        if "{answer}" not in self.user:
            raise ConfigError("qa.answer_first.prompt.user must contain {answer}")
        self.examples = [e if isinstance(e, QuestionExample) else QuestionExample(**e) for e in self.examples]
        if any(not (e.answer.strip() and e.question.strip()) for e in self.examples):
            raise ConfigError("qa.answer_first prompt examples need an answer and a question")

    def messages(self, chunk: Chunk, answer: str, section: str = "", header: str = "") -> Messages:
        path = chunk.metadata.get("heading_path") or []
        values = {"title": str(chunk.metadata.get("title") or chunk.document_id), "answer": answer,
                  "section": section or (" > ".join(path) if isinstance(path, list) else str(path)),
                  "header": header, "context": chunk.content, "document_id": chunk.document_id}
        turns: list[dict[str, str]] = []
        for example in self.examples:
            shown = {**values, "title": example.title, "section": example.section, "answer": example.answer,
                     "header": example.header, "context": example.answer}
            turns += [{"role": "user", "content": self._fill(shown)},
                      {"role": "assistant", "content": example.question}]
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + turns + [{"role": "user", "content": self._fill(values)}]

    def _fill(self, values: Mapping[str, str]) -> str:
        return _QUESTION_FIELD.sub(lambda m: values[m.group(1)], self.user)


@dataclass
class AnswerFirstConfig:
    """Answer-first generation (`qa.answer_first`): spans picked from the chunk, the generator writes
    only their questions, and a pair is kept when it passes the round trip."""

    min_span_words: int = 5
    """Shorter sentences and rows are not asked about (too little to answer with)."""
    max_span_words: int = 60
    """Longer ones are not either (a run-on paragraph is no answer)."""
    answer_rank: int = 1
    """Round trip: the span must be among this many of the chunk's sentences and rows closest to the
    question (1: an extractive reader would answer with exactly it)."""
    retrieval_k: int = 5
    """The question must retrieve its source chunk (or a chunk holding the same span) among this many."""
    retrieval_mode: str = "hybrid"
    """match_chunks' ranking for the round trip: vector, text or hybrid (what serving uses by default)."""
    max_question_chars: int = 300
    """A longer question is a malformed reply (the model kept talking)."""
    prompt: QuestionPromptConfig = field(default_factory=QuestionPromptConfig)
    retry_prompts: list[QuestionPromptConfig] = field(default_factory=list)
    """Asked in turn for a span whose question failed a check that another wording may pass (everything
    but `not_verbatim`), until one passes: over-generate and filter, as Alberti et al. do. Empty (the
    default): one question per span. More pairs, but on pip's docs worse ones: the model tuned on them
    fell below the base (benchmarks/README.md), so more chunks (`per_document`) is the default lever."""

    def __post_init__(self) -> None:
        smallest = min(self.retrieval_k, self.answer_rank, self.min_span_words)
        if smallest < 1 or self.max_span_words < self.min_span_words:
            raise ConfigError("qa.answer_first: retrieval_k, answer_rank and min_span_words must be at least 1, "
                              "and max_span_words at least min_span_words")
        self.retry_prompts = [p if isinstance(p, QuestionPromptConfig) else QuestionPromptConfig(**p)
                              for p in self.retry_prompts]
        if self.retrieval_mode not in ("vector", "text", "hybrid"):
            raise ConfigError(f"qa.answer_first.retrieval_mode must be vector, text or hybrid, "
                              f"got {self.retrieval_mode!r}")


@dataclass
class ValidationConfig:
    """Thresholds a generated pair must pass (`qa.validation`)."""

    min_faithfulness: float = 1.0
    """Share of the answer's sentences the chunk must support (1.0: every one)."""
    sentence_similarity: float = 0.5
    """Cosine an answer sentence needs to its closest chunk unit to count as supported."""
    min_content_overlap: float = 0.6
    """Share of the answer's content words (stemmed, stopwords out) that must occur in the chunk."""
    min_answer_chars: int = 2
    """Shorter answers (after stripping) count as empty."""
    min_question_chars: int = 8
    """Shorter questions count as empty."""

    def __post_init__(self) -> None:
        for name in ("min_faithfulness", "sentence_similarity", "min_content_overlap"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"qa.validation.{name} must be in [0, 1], got {value}")


@dataclass
class GenerationConfig:
    """`qa` settings of `promptly qa generate`."""

    mode: str = "auto"
    """answer_first (spans picked, questions asked), full_pair (the generator writes whole pairs), or
    auto: what the generator suits (qa_generator=local_hf: answer_first; openai_compatible: full_pair)."""
    per_document: int = 8
    """At most this many chunks sampled per document."""
    pairs_per_chunk: int = 2
    """Pairs asked for per chunk (answer_first: spans asked about); replies with more have the surplus rejected."""
    min_chunk_tokens: int = 32
    """Shorter chunks (a lone heading) are not sampled unless a document has nothing longer."""
    seed: int = 42
    """Sampling of chunks per document, and the per-request generator seed."""
    regenerate: bool = False
    """Ask again for chunks that already have pairs, replacing their generated pairs (never the file's)."""
    max_consecutive_errors: int = 3
    """Stop when this many requests in a row fail: the endpoint is down or misconfigured."""
    prompt: PromptConfig = field(default_factory=PromptConfig)
    """full_pair: the messages asking for pairs."""
    answer_first: AnswerFirstConfig = field(default_factory=AnswerFirstConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    """Only for documents stored before splits were (the store's own split of a document comes first)."""

    def __post_init__(self) -> None:
        if self.per_document < 1 or self.pairs_per_chunk < 1:
            raise ConfigError("qa.per_document and qa.pairs_per_chunk must be at least 1")
        if self.mode not in MODES:
            raise ConfigError(f"qa.mode must be one of {', '.join(MODES)}, got {self.mode!r}")




@dataclass
class QASettings(GenerationConfig):
    """The `qa` node of configs/qa.yaml: the generation settings plus the command's own."""

    split: Any = None
    """${ingest.qa.split} (an interpolation, which a typed node would refuse); read as a SplitConfig."""
    auto_migrate: bool = True
    """Apply pending migrations before writing."""
    progress: bool = True
    """Show a progress bar."""
    summary_samples: int = 5
    """Accepted pairs shown under the summary table."""
    export: dict[str, Any] = field(default_factory=lambda: {"path": "disliked_conversations.jsonl"})
    """`qa export`: {path: where the disliked conversations go}."""


@dataclass
class QAConfig:
    """`promptly qa generate | export`."""

    paths: Any = None
    store: Any = None
    embedder: Any = None
    ingest: Any = None
    qa_generator: Any = None
    task_name: str = "qa"
    action: str = "generate"
    """generate or export."""
    qa: QASettings = field(default_factory=QASettings)
