"""Typed schema of the `data` config group: a typo in a key or an enum value fails at composition."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class RetrievalMode(StrEnum):
    """match_chunks' ranking."""

    vector = "vector"
    text = "text"
    hybrid = "hybrid"
    """The vector and BM25 rankings fused by their normalised scores (migration 0014): the default, the best mode
    measured by benchmarks/retrieval_quality.py on three corpora (what `promptly serve` uses)."""


class Task(StrEnum):
    """What the model learns from the store."""

    rag_qa = "rag_qa"
    """Answer a QA pair's question from retrieved chunks; loss on the answer tokens only."""
    causal_lm = "causal_lm"
    """Continued pre-training on chunk text."""


class ExampleSource(StrEnum):
    """Where `rag_qa` examples come from (`data.sources` lists one or both)."""

    qa_pairs = "qa_pairs"
    """The store's QA pairs (from the QA file or `promptly qa generate`), context retrieved per question."""
    conversations = "conversations"
    """Served conversations users liked, with the chunks the answer cited as context (`data=conversations`)."""


class Batching(StrEnum):
    """How examples become batches (promptly/data/batching.py says why `auto` chooses as it does)."""

    auto = "auto"
    """`packed` with flash-attention (varlen) or flex attention, which skip across-example work; else
    `grouped` (SDPA spends more on a packed row's block-diagonal mask than padding costs)."""
    packed = "packed"
    """Several examples per row, positions restarting per example, no attention across them."""
    grouped = "grouped"
    """One example per row, batches of similar lengths, padded to the longest of the batch."""
    padded = "padded"
    """One example per row in random order, padded to the longest (the usual collator; for comparison)."""


class ChatTemplateUse(StrEnum):
    """Whether prompts go through the tokenizer's chat template."""

    auto = "auto"
    """Use it when the tokenizer has one."""
    always = "always"
    """Require one (error otherwise)."""
    never = "never"
    """Always use `prompt.template`."""


@dataclass
class PromptConfig:
    """How a question and its retrieved chunks become the prompt the answer follows."""

    system: str = "You answer technical questions about software using only the given context."
    """System message (chat templates) or first paragraph of the plain template."""
    template: str = "{system}\n\nContext:\n{context}\n\nQuestion: {question}\nAnswer:"
    """Plain prompt with {system}, {context} and {question}; used when no chat template applies."""
    user_template: str = "Context:\n{context}\n\nQuestion: {question}"
    """The user message given to a chat template ({context}, {question})."""
    chunk_template: str = "[{number}] {title}\n{content}"
    """How each retrieved chunk is written ({number}: its source number, {title}, {content}, {document_id},
    {ordinal})."""
    chunk_separator: str = "\n\n"
    """Between retrieved chunks."""
    tables: str = "rows"
    """How a chunk's Markdown tables are written into the prompt: rows ("Column: value; ..." a row, so
    each value carries its column's name) or markdown (as in the document)."""
    answer_prefix: str = " "
    """Put before the answer after a plain template (not after a chat template's generation prompt)."""
    chat_template: ChatTemplateUse = ChatTemplateUse.auto
    """Whether to use the tokenizer's chat template."""


@dataclass
class RetrievalConfig:
    """How the context of a `rag_qa` example is retrieved from the store."""

    k: int = 3
    """Chunks retrieved per question."""
    mode: RetrievalMode = RetrievalMode.hybrid
    """Search mode of match_chunks: vector, text or hybrid."""
    include_gold: bool = True
    """In training, put the pair's gold chunk among the k (replacing the lowest-ranked hit) if missed."""
    include_gold_eval: bool = False
    """The same for validation and test (off: evaluate with what retrieval really returns)."""
    batch_size: int = 64
    """Questions embedded together."""


@dataclass
class SplitLimits:
    """At most this many examples per split (null: all); for debugging and overfitting."""

    train: int | None = None
    validation: int | None = None
    test: int | None = None


@dataclass
class DataConfig:
    """The `data` group: RagDataModule's arguments."""

    _target_: str = "promptly.data.datamodule.RagDataModule"
    task: Task = Task.rag_qa
    """rag_qa or causal_lm."""
    sources: list[ExampleSource] = field(default_factory=lambda: [ExampleSource.qa_pairs])
    """rag_qa examples: qa_pairs, conversations, or both (each split gets both sources' examples)."""
    batch_size: int = 8
    """Rows per training batch (packed: rows of up to max_length tokens, several examples each)."""
    eval_batch_size: int | None = None
    """Rows per validation/test batch (null: batch_size)."""
    max_length: int | None = 1024
    """Tokens per example; longer ones lose context (never answer) tokens. null: the model's context."""
    batching: Batching = Batching.auto
    """packed, grouped, padded or auto."""
    pad_to_multiple_of: int | None = None
    """Round padded lengths up (8 or 64 help tensor cores; null on CPU)."""
    seed: int = 42
    """Shuffling; the document splits come from the store (fixed at ingest from its own seed)."""
    num_workers: int = 0
    """DataLoader worker processes (batches are cheap slices of a memory map: 0 is usually fastest)."""
    validation_split: str = "validation"
    """Split used for validation (the overfit debug config uses train)."""
    cache_dir: str | None = None
    """Where prepare_data writes token files (null: <run dir>/data)."""
    limit: SplitLimits = field(default_factory=SplitLimits)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
