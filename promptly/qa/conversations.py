"""Disliked served conversations out for review (`promptly qa export`).

Liked ones are training data: promptly/data/conversations.py turns them into examples.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from promptly.store.base import ChunkStore, Conversation


def conversation_record(conv: Conversation) -> dict[str, Any]:
    """A conversation as one JSON-lines record for review."""
    return {"id": conv.id, "question": conv.question, "answer": conv.answer, "chunk_ids": list(conv.chunk_ids),
            "feedback": conv.feedback, "model_version": conv.model_version,
            "created_at": conv.created_at.isoformat() if conv.created_at else None}


def export_disliked(store: ChunkStore, path: Path) -> int:
    """Write every disliked conversation to a .jsonl (oldest first); return how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for conv in store.iter_conversations(feedback="down"):
            f.write(json.dumps(conversation_record(conv), ensure_ascii=False) + "\n")
            count += 1
    tmp.replace(path)
    return count
