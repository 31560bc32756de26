"""Token-aware chunking with the embedder's own tokenizer, so no chunk is cut off when embedded."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Any

from semantic_text_splitter import MarkdownSplitter, TextSplitter
from tokenizers import Tokenizer

from promptly.records import Chunk, Document

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_FENCE = re.compile(r"^(```|~~~)", re.MULTILINE)
_ANCHOR = re.compile(r"[\s\u00b6#]+$")  # the pilcrow permalink Sphinx puts after each heading
CONTEXT_SEPARATOR = " > "


def untruncated_tokenizer(hf_tokenizer: Any) -> Tokenizer:
    """A copy of a fast Hugging Face tokenizer's Rust tokenizer, with truncation and padding off.

    The packaged MiniLM tokenizer truncates at 128 tokens: left on, every long text would count as
    128 tokens and the whole document would silently become one chunk.
    """
    backend = getattr(hf_tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError("token-aware chunking needs a fast (Rust) Hugging Face tokenizer for the embedder")
    tokenizer = Tokenizer.from_str(backend.to_str())
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


@dataclass(frozen=True)
class _Heading:
    offset: int
    level: int
    text: str


class TokenChunker:
    """Splits documents into chunks of at most `chunk_tokens` tokens (special tokens excluded).

    Markdown (and HTML, which is loaded as Markdown-ish text) is split on its structure first;
    plain text on paragraphs, sentences, then words.
    """

    def __init__(self, chunk_tokens: int = 200, overlap_tokens: int = 32, min_chunk_tokens: int = 24,
                 special_tokens: int = 2, context: bool = True) -> None:
        if overlap_tokens >= chunk_tokens:
            raise ValueError(
                f"ingest.chunker.overlap_tokens={overlap_tokens} must be smaller than chunk_tokens={chunk_tokens}"
            )
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens
        self.min_chunk_tokens = min_chunk_tokens
        self.special_tokens = special_tokens
        self.context = context
        self.max_model_tokens: int | None = None
        self.tokenizer: Tokenizer | None = None
        self._markdown: MarkdownSplitter | None = None
        self._text: TextSplitter | None = None

    @property
    def ready(self) -> bool:
        return self.tokenizer is not None

    def bind(self, tokenizer: Tokenizer, max_model_tokens: int | None = None) -> TokenChunker:
        """Attach the embedder's tokenizer (done lazily: an unchanged corpus never loads it)."""
        if max_model_tokens is not None and self.chunk_tokens + self.special_tokens > max_model_tokens:
            raise ValueError(
                f"ingest.chunker.chunk_tokens={self.chunk_tokens} (+{self.special_tokens} special tokens) "
                f"exceeds the embedder's max_seq_length={max_model_tokens}: chunks would be truncated when "
                f"embedded; use chunk_tokens<={max_model_tokens - self.special_tokens}"
            )
        self.tokenizer = tokenizer
        self.max_model_tokens = max_model_tokens
        self._markdown = MarkdownSplitter.from_huggingface_tokenizer(
            tokenizer, self.chunk_tokens, overlap=self.overlap_tokens)
        self._text = TextSplitter.from_huggingface_tokenizer(tokenizer, self.chunk_tokens, overlap=self.overlap_tokens)
        return self

    def fingerprint(self) -> str:
        """The settings that shape chunks: a change re-chunks every document on the next ingest."""
        context = ";context=title+headings:v1" if self.context else ""
        return (f"chunker=v2;tokens={self.chunk_tokens};overlap={self.overlap_tokens};"
                f"min={self.min_chunk_tokens}{context}")

    def embedding_text(self, chunk: Chunk) -> str:
        """What is embedded for a chunk: its context (title and heading path) above its content.

        The context is cut to the tokens the model has left after the chunk, so the chunk's own text is
        never truncated by the embedder; the full context is indexed for text search (metadata.context).
        """
        context = str(chunk.metadata.get("context") or "")
        if not context:
            return chunk.content
        if self.tokenizer is not None and self.max_model_tokens is not None:
            room = self.max_model_tokens - self.special_tokens - chunk.token_count - 2  # 2: the blank line
            encoding = self.tokenizer.encode(context, add_special_tokens=False)
            if room <= 0:
                return chunk.content
            if len(encoding.ids) > room:
                context = context[:encoding.offsets[room - 1][1]]
        return f"{context}\n\n{chunk.content}"

    def count_tokens(self, text: str) -> int:
        if self.tokenizer is None:
            raise RuntimeError("TokenChunker.bind() must be called before chunking")
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def _merge_small(self, spans: list[tuple[int, int]], text: str) -> list[tuple[int, int]]:
        """Fold chunks under `min_chunk_tokens` (a lone heading, say) into the next or previous one.

        The splitter closes a chunk at a heading when the section after it does not fit, which leaves
        heading-only chunks that match nothing. A merge happens only if the result still fits the budget.
        """
        out: list[tuple[int, int]] = []
        carry: tuple[int, int] | None = None
        for start, end in spans:
            if carry is not None:
                if self.count_tokens(text[carry[0]:end]) <= self.chunk_tokens:
                    start = carry[0]
                else:
                    out.append(carry)
                carry = None
            if self.count_tokens(text[start:end]) < self.min_chunk_tokens:
                carry = (start, end)
            else:
                out.append((start, end))
        if carry is not None:
            if out and self.count_tokens(text[out[-1][0]:carry[1]]) <= self.chunk_tokens:
                out[-1] = (out[-1][0], carry[1])
            else:
                out.append(carry)
        return out

    def split(self, document: Document) -> list[Chunk]:
        """The document's chunks with their metadata (no embeddings yet)."""
        is_markdown = document.metadata.get("format") in ("markdown", "html")
        splitter = self._markdown if is_markdown else self._text
        if splitter is None:
            raise RuntimeError("TokenChunker.bind() must be called before chunking")
        headings = _headings(document.text) if is_markdown else []
        offsets = [h.offset for h in headings]
        chunks = []
        spans = self._merge_small([(start, start + len(text)) for start, text in
                                   splitter.chunk_indices(document.text)], document.text)
        for ordinal, (start, end) in enumerate(spans):
            content = document.text[start:end]
            metadata: dict[str, Any] = {
                "document_id": document.id,
                "source": document.source,
                "title": document.title,
                "ordinal": ordinal,
                "char_start": start,
                "char_end": start + len(content),
            }
            if document.metadata.get("owner"):  # an upload's owner: what search filters scope uploads by
                metadata["owner"] = document.metadata["owner"]
            path = _heading_path(headings, offsets, start)
            if path:
                metadata["heading_path"] = path
            if self.context:
                metadata["context"] = chunk_context(document.title, path)
            tokens = self.count_tokens(content)
            metadata["token_count"] = tokens
            chunks.append(Chunk(document_id=document.id, ordinal=ordinal, content=content,
                                token_count=tokens, metadata=metadata))
        return chunks


def chunk_context(title: str, heading_path: list[str]) -> str:
    """`title > heading > subheading`: where a chunk sits, for chunks that do not name their subject.

    A heading the title already contains (a page's own top heading, usually) is not repeated.
    """
    parts = [title.strip()] if title.strip() else []
    for heading in heading_path:
        heading = _ANCHOR.sub("", heading).strip()
        if heading and not any(heading in p for p in parts):
            parts.append(heading)
    return CONTEXT_SEPARATOR.join(parts)


def _headings(text: str) -> list[_Heading]:
    """Markdown headings with their offsets, ignoring `#` lines inside fenced code."""
    fences = [m.start() for m in _FENCE.finditer(text)]
    out = []
    for m in _HEADING.finditer(text):
        inside_code = sum(1 for f in fences if f < m.start()) % 2 == 1
        if not inside_code:
            out.append(_Heading(m.start(), len(m.group(1)), m.group(2).strip()))
    return out


def _heading_path(headings: list[_Heading], offsets: list[int], start: int) -> list[str]:
    """The chain of headings in force at `start` (a chunk that starts with a heading is under it)."""
    idx = bisect.bisect_right(offsets, start)
    stack: list[_Heading] = []
    for h in headings[:idx]:
        while stack and stack[-1].level >= h.level:
            stack.pop()
        stack.append(h)
    return [h.text for h in stack]
