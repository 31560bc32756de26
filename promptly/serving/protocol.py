"""The request bodies the API accepts (OpenAI's chat schema plus promptly's fields) and the JSON it returns.

Unknown OpenAI fields are ignored, as OpenAI-compatible servers do; promptly's own fields (`k`,
`filter`, `style`, `instruction`, `scope`, `answer_style`) travel in the OpenAI client's `extra_body`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from promptly.errors import ConfigError, EmptyInputError
from promptly.evidence import EvidencedAnswer
from promptly.retrieval import ContextChunk
from promptly.textsafe import first_unsafe


class SafeText(BaseModel):
    """Refuses text Postgres or a tokenizer cannot take (a NUL, a lone UTF-16 surrogate) in any field, at any
    depth: a 400 naming the field, rather than a 500 from deep inside (promptly.textsafe has the rule)."""

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any, info: ValidationInfo) -> Any:
        found = first_unsafe(value, str(info.field_name))  # nested models (messages) check their own fields
        if found:
            raise ValueError(found)
        return value


class Message(SafeText):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """A string content, or the text parts of a list content joined."""
        if isinstance(self.content, list):
            return "\n".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class Retrieval(SafeText):
    """promptly's retrieval settings on a request."""

    model_config = ConfigDict(extra="ignore")

    k: int | None = Field(default=None, ge=1, le=50, description="Chunks retrieved (default: retrieval.k)")
    filter: dict[str, Any] | None = Field(default=None, description="Chunk metadata the sources must match (@>)")
    user: str | None = Field(default=None, description="Who asks: sees their own uploads, and only theirs")
    scope: Literal["all", "own"] = Field(default="all", description="own: only the user's uploads")

    def search_filter(self) -> dict[str, Any] | None:
        """The metadata filter, with the owner added for scope=own."""
        if self.scope == "own":
            if not self.user:
                raise ConfigError("scope=own needs a `user` (whose uploads to search)")
            return {**(self.filter or {}), "owner": self.user}
        return self.filter


class ChatRequest(Retrieval):
    model: str
    messages: list[Message]
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int = Field(default=1, ge=1, le=1)
    style: str | None = Field(default=None, description="default | short | detailed | a configured style")
    instruction: str | None = Field(default=None, description="A custom system instruction for this answer")
    answer_style: Literal["generative", "extractive"] | None = Field(
        default=None, description="generative (the model's words, with [n] markers) or extractive (quoted source "
                                  "sentences); default: evidence.answer_style")

    def question(self) -> str:
        """The last user message: what is retrieved for and answered."""
        users = [m for m in self.messages if m.role == "user"]
        if not users:
            raise EmptyInputError("messages hold no user message to answer")
        question = users[-1].text().strip()
        if not question:
            raise EmptyInputError("the last user message is empty")
        return question

    def system_instruction(self) -> str | None:
        """`instruction`, else the request's own system (or developer) message, if any."""
        if self.instruction:
            return self.instruction
        systems = [m.text() for m in self.messages if m.role in ("system", "developer") and m.text().strip()]
        return "\n".join(systems) or None


class RetrieveRequest(Retrieval):
    query: str = Field(min_length=1)


class FeedbackRequest(SafeText):
    conversation_id: str
    feedback: Literal["up", "down"] | None


def citation_json(number: int, chunk: ContextChunk, with_content: bool = False) -> dict[str, Any]:
    out = {"number": number, "chunk_id": chunk["chunk_id"], "document_id": chunk["document_id"],
           "ordinal": int(chunk["ordinal"]), "title": str(chunk.get("title") or chunk["document_id"]),
           "score": chunk.get("score")}
    if with_content:
        out["content"] = chunk["content"]
    return out


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def completion(cid: str, model: str, text: str, finish: str, usage: dict[str, int],
               citations: list[dict[str, Any]], conversation_id: str | None,
               evidence: dict[str, Any] | None = None) -> dict[str, Any]:
    """OpenAI's chat completion; `content` is the answer with its [n] markers, `evidence` (beside `citations`)
    what it rests on."""
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish,
                         "logprobs": None}],
            "usage": usage, "citations": citations, "evidence": evidence, "conversation_id": conversation_id}


def evidence_json(answer: EvidencedAnswer) -> dict[str, Any]:
    """The `evidence` field: the answer with its markers, style, abstention, and each supporting sentence
    (citation number, chunk, verbatim sentence with its offsets in the chunk, support)."""
    return {"content": answer.text, "answer_style": answer.style, "abstained": answer.abstained,
            "support": answer.support, "sentences": [asdict(e) for e in answer.evidence]}


def chunk(cid: str, model: str, delta: dict[str, Any], finish: str | None = None,
          **extra: Any) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}


def error_body(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape, which its clients turn into typed exceptions with this message."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
