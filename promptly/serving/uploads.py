"""POST /v1/uploads: a user's file saved under `<uploads_dir>/<owner>/` and put through the upload
ingestion (`ingest=upload`: PII redaction on), with `metadata.owner` on its chunks.

Each owner's folder is its own ingest source (`uploads/<owner>`, ids `uploads/<owner>/<file>`), so
incremental cleanup never touches another user's uploads or the corpus. A file the ingestion cannot
read is removed again and reported as the client's error: nothing half-stored.
"""

from __future__ import annotations

import io
import re
import threading
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict
from rich.console import Console

from promptly.errors import ConfigError, PromptlyError
from promptly.serving.config import resolved_copy

ALLOWED = (".pdf", ".md", ".markdown", ".txt")
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


class UploadTooLargeError(PromptlyError):
    """Larger than serve.max_upload_bytes (413)."""


class Uploads:
    """Runs the upload ingestion of the serve config (its `ingest` group) for one owner at a time."""

    def __init__(self, cfg: DictConfig, uploads_dir: str | Path, max_bytes: int) -> None:
        self.cfg, self.root, self.max_bytes = cfg, Path(uploads_dir).expanduser(), max_bytes
        self._lock = threading.Lock()  # one ingest at a time: each syncs a whole owner folder

    def ingest(self, owner: str, filename: str, data: bytes) -> dict[str, Any]:
        name = _UNSAFE.sub("_", Path(filename).name).strip(" .")
        if not name or Path(name).suffix.lower() not in ALLOWED:
            raise ConfigError(f"upload {filename!r}: only {', '.join(ALLOWED)} files are accepted")
        if len(data) > self.max_bytes:
            raise UploadTooLargeError(f"upload {filename!r} is larger than serve.max_upload_bytes={self.max_bytes}")
        if not data.strip():
            raise ConfigError(f"upload {filename!r} is empty")
        from promptly.ingest.command import run as run_ingest

        folder = self.root / owner
        target = folder / name
        with self._lock:
            folder.mkdir(parents=True, exist_ok=True)
            previous = target.read_bytes() if target.is_file() else None
            target.write_bytes(data)
            cfg = resolved_copy(self.cfg)
            with open_dict(cfg):
                cfg.ingest.source.update(path=str(folder), name=f"uploads/{owner}", id_prefix=f"uploads/{owner}/",
                                         owner=owner)
                cfg.ingest.progress = False
            result = run_ingest(cfg, console=Console(file=io.StringIO()))
            document_id = f"uploads/{owner}/{name}"
            failed = [f for f in result.sync.failed if f.path == document_id]
            if failed:
                if previous is None:
                    target.unlink(missing_ok=True)
                else:
                    target.write_bytes(previous)
                raise ConfigError(f"upload {filename!r} could not be read: {failed[0].reason}")
        redaction = result.redaction
        return {"document_id": document_id, "owner": owner, "added": result.sync.added,
                "updated": result.sync.updated, "unchanged": result.sync.unchanged,
                "chunks_written": result.sync.chunks_written,
                "redacted": dict(redaction.counts) if redaction is not None else {}}
