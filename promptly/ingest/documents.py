"""Find source files, load them as normalised Documents, and report the ones that cannot be read."""

from __future__ import annotations

import glob
import json
import os
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptly.errors import DocumentError, InputNotFoundError
from promptly.records import Document, sha256_hex
from promptly.textsafe import clean_text, clean_value

SUPPORTED_SUFFIXES = (".md", ".markdown", ".mdx", ".rst", ".txt", ".html", ".htm", ".pdf", ".jsonl")


@dataclass(frozen=True)
class LoadFailure:
    """A file (or a line of a .jsonl) that was skipped, and why.

    `path` is the document id when it is known; the ingest keeps that document's stored version.
    `hides_ids` marks a failure whose document ids cannot be known (an undecodable .jsonl, a line that
    is not a record): the ingest then deletes nothing, since any stored document could be one of them.
    """

    path: str
    reason: str
    hides_ids: bool = False


@dataclass
class SourceConfig:
    """Where documents come from."""

    path: str
    """A folder (searched recursively) or a glob such as `docs/**/*.md`."""
    name: str = "default"
    """Source name stored with each document; `cleanup=incremental` only deletes within it."""
    id_prefix: str = ""
    """Put before every document id (e.g. `uploads/`), so two sources' `README.md` never collide."""
    suffixes: list[str] = field(default_factory=lambda: list(SUPPORTED_SUFFIXES))
    """File types to load; anything else is ignored."""
    max_bytes: int = 5_000_000
    """Files larger than this are reported as oversized and skipped."""
    exclude: list[str] = field(default_factory=list)
    """Glob patterns (relative to the root) to leave out, e.g. the QA file beside the corpus."""
    owner: str | None = None
    """Stored as `metadata.owner` of every document and chunk (an uploader), so a search filter
    `{"owner": ...}` finds only that user's uploads."""


def discover(source: SourceConfig) -> tuple[Path, list[Path]]:
    """The root that ids are relative to, and the matching files in a stable order."""
    path = Path(source.path).expanduser()
    if path.exists() and not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        raise InputNotFoundError(f"ingest.source.path={source.path} cannot be read (permission denied)")
    if path.is_dir():
        root = path
        candidates = [p for p in path.rglob("*") if p.is_file()]
    elif any(ch in source.path for ch in "*?["):
        root = Path(_glob_root(source.path))
        candidates = [Path(p) for p in glob.glob(source.path, recursive=True) if Path(p).is_file()]
    elif path.is_file():
        root, candidates = path.parent, [path]
    else:
        raise InputNotFoundError(f"ingest.source.path={source.path} does not exist "
                                 "(neither a folder, a file nor a glob)")
    suffixes = {s.lower() for s in source.suffixes}
    files = [
        p for p in candidates
        if p.suffix.lower() in suffixes
        and not any(p.relative_to(root).match(pattern) for pattern in source.exclude)
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    return root, sorted(files)


def _glob_root(pattern: str) -> str:
    parts = Path(pattern).parts
    fixed = [p for p in parts[: next(i for i, p in enumerate(parts) if any(c in p for c in "*?["))]]
    return str(Path(*fixed)) if fixed else "."


def load_source(source: SourceConfig, fingerprint: str,
                discovered: tuple[Path, list[Path]] | None = None) -> Iterator[Document | LoadFailure]:
    """Every document of the source, or a LoadFailure in its place (`discovered`: reuse a listing)."""
    root, files = discovered or discover(source)
    for path in files:
        yield from load_file(path, root, source, fingerprint)


def load_file(path: Path, root: Path, source: SourceConfig, fingerprint: str) -> Iterator[Document | LoadFailure]:
    rel = source.id_prefix + path.relative_to(root).as_posix()
    suffix = path.suffix.lower()
    records = suffix == ".jsonl"  # a file of many documents, whose ids are only known once it is read
    try:
        size = path.stat().st_size
        if size > source.max_bytes:
            yield LoadFailure(rel, f"oversized: {size} bytes > ingest.source.max_bytes={source.max_bytes}",
                              hides_ids=records)
            return
        raw = path.read_bytes()
    except OSError as err:
        yield LoadFailure(rel, f"unreadable: {err.strerror or err}", hides_ids=records)
        return
    if records:
        yield from _load_jsonl(raw, rel, path, source, fingerprint)
        return
    try:
        title, text, metadata = _extract(raw, suffix, path)
    except DocumentError as err:
        yield LoadFailure(rel, str(err))
        return
    yield make_document(rel, text, title, source.name, path.resolve().as_uri(), _owned(metadata, source),
                        fingerprint)


def _decode(raw: bytes) -> str:
    if b"\x00" in raw[:8192]:
        raise DocumentError("binary content (NUL bytes) in a text file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DocumentError(f"not valid UTF-8 (byte {err.start}): re-save the file as UTF-8") from None


def _extract(raw: bytes, suffix: str, path: Path) -> tuple[str, str, dict[str, Any]]:
    if suffix == ".pdf":
        from promptly.ingest.formats import pdf_to_text

        title, text = pdf_to_text(raw)
        title = title or path.stem
        fmt = "pdf"
    elif suffix in (".html", ".htm"):
        from promptly.ingest.formats import html_to_markdown

        title, text = html_to_markdown(_decode(raw))
        title = title or path.stem
        fmt = "html"
    elif suffix == ".mdx":
        from promptly.ingest.formats import mdx_to_markdown

        title, text = mdx_to_markdown(_decode(raw))
        title = title or _markdown_title(text) or path.stem.replace("-", " ").replace("_", " ")
        fmt = "markdown"  # what the text is once the JSX is out (the chunker splits it by headings)
    elif suffix == ".rst":
        from promptly.ingest.rst import rst_to_markdown

        title, text = rst_to_markdown(_decode(raw))
        title = title or path.stem.replace("-", " ").replace("_", " ")
        fmt = "markdown"  # docutils' HTML back to text with `#` headings, like an .html page
    else:
        text = _decode(raw)
        fmt = "markdown" if suffix in (".md", ".markdown") else "text"
        title = _markdown_title(text) if fmt == "markdown" else ""
        title = title or path.stem.replace("-", " ").replace("_", " ")
    text = normalise(text)
    if not text:
        raise DocumentError("empty: no text after normalisation")
    return title, text, {"format": fmt}


def _load_jsonl(raw: bytes, rel: str, path: Path, source: SourceConfig, fingerprint: str
                ) -> Iterator[Document | LoadFailure]:
    try:
        lines = _decode(raw).splitlines()
    except DocumentError as err:
        yield LoadFailure(rel, str(err), hides_ids=True)
        return
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{rel}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            yield LoadFailure(where, f"invalid JSON: {err.msg}", hides_ids=True)
            continue
        if not isinstance(record, dict) or not record.get("id"):
            yield LoadFailure(where, "a record needs a non-empty `id` and a string `text`", hides_ids=True)
            continue
        doc_id = source.id_prefix + str(record["id"])
        if not isinstance(record.get("text"), str):
            yield LoadFailure(doc_id, f"{where}: a record needs a string `text`")
            continue
        text = normalise(record["text"])
        if not text:
            yield LoadFailure(doc_id, f"{where}: empty: no text after normalisation")
            continue
        metadata = record.get("metadata") or {}
        if not isinstance(metadata, dict):
            yield LoadFailure(doc_id, f"{where}: `metadata` must be an object")
            continue
        title = str(record.get("title") or record["id"])
        yield make_document(doc_id, text, title, source.name, f"{path.resolve().as_uri()}#L{lineno}",
                            _owned({"format": "jsonl", **metadata}, source), fingerprint)


def _owned(metadata: dict[str, Any], source: SourceConfig) -> dict[str, Any]:
    return {**metadata, "owner": source.owner} if source.owner else metadata


def make_document(doc_id: str, text: str, title: str, source: str, uri: str, metadata: dict[str, Any],
                  fingerprint: str) -> Document:
    """A Document whose hash covers its text, title, metadata and the ingest settings that shape its chunks.

    Every string goes through promptly.textsafe's rule first (a NUL past the binary sniff, or a "\\ud800" in a
    JSONL record, would otherwise fail hashing or the store), so ids and hashes are those of what is stored."""
    doc_id, text, title, metadata = clean_text(doc_id), clean_text(text), clean_text(title), clean_value(metadata)
    material = "\x1f".join([fingerprint, title, json.dumps(metadata, sort_keys=True), text])
    return Document(id=doc_id, text=text, title=title, source=source, uri=uri,
                    content_hash=sha256_hex(material), metadata=metadata)


def normalise(text: str) -> str:
    """NFC, Unix newlines, no trailing spaces, at most two blank lines in a row; promptly.textsafe's rule."""
    text = unicodedata.normalize("NFC", clean_text(text)).replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() for line in text.split("\n")]
    out: list[str] = []
    blank = 0
    for line in lines:
        blank = blank + 1 if not line else 0
        if blank <= 2:
            out.append(line)
    return "\n".join(out).strip()


def _markdown_title(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return ""
