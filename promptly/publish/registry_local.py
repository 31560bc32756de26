"""The default registry: a folder laid out like a Hub repository, with commits and version tags.

    <root>/<owner>/<name>/
      repo.json                 the repository's settings (private, created_at)
      snapshots/<commit>/...    the files of each commit, never changed once written
      commits.jsonl             one line per commit: id, parent, message, time, files with their SHA-256
      refs/heads/main           the commit the branch points at
      refs/tags/v1, v2, ...     the commit each version points at

`AutoModelForCausalLM.from_pretrained(<root>/<owner>/<name>/snapshots/<commit>)` loads a version. A commit
becomes visible by one rename of a finished folder, and a tag is created only if it does not exist, so an
interrupted push leaves no tag and no half-written snapshot.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

from promptly.errors import ConfigError, InputNotFoundError, PromptlyError

LOCAL_OWNER = "local"
BRANCH = "main"


class TagExistsError(PromptlyError, ValueError):
    """A version tag is already taken (another publish of the same repository ran at the same time)."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


class LocalRegistry:
    """Repositories under `root`, one folder per owner/name."""

    kind = "local"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def resolve_repo_id(self, repo_id: str) -> str:
        parts = [p for p in repo_id.strip().split("/") if p]
        if len(parts) == 1:
            parts = [LOCAL_OWNER, parts[0]]
        if len(parts) != 2 or any(p in (".", "..") or p.startswith(".") for p in parts):
            raise ConfigError(f"publish.repo_id={repo_id!r} must be a name or owner/name")
        return "/".join(parts)

    def repo_dir(self, repo_id: str) -> Path:
        return self.root / self.resolve_repo_id(repo_id)

    def ensure_repo(self, repo_id: str, private: bool) -> None:
        path = self.repo_dir(repo_id)
        if (path / "repo.json").is_file():
            return
        created = datetime.now(UTC).isoformat()
        _write_atomic(path / "repo.json", json.dumps({"repo_id": self.resolve_repo_id(repo_id), "private": private,
                                                      "created_at": created}, indent=2) + "\n")

    def tags(self, repo_id: str) -> dict[str, str]:
        tags_dir = self.repo_dir(repo_id) / "refs" / "tags"
        if not tags_dir.is_dir():
            return {}
        return {p.name: p.read_text(encoding="utf-8").strip() for p in sorted(tags_dir.iterdir())
                if p.is_file() and not p.name.startswith(".")}

    def head(self, repo_id: str) -> str | None:
        ref = self.repo_dir(repo_id) / "refs" / "heads" / BRANCH
        return ref.read_text(encoding="utf-8").strip() if ref.is_file() else None

    def commit_folder(self, repo_id: str, folder: Path, message: str) -> str:
        repo = self.repo_dir(repo_id)
        if not (repo / "repo.json").is_file():
            raise InputNotFoundError(f"the local registry has no repository {repo_id} at {repo}")
        snapshots = repo / "snapshots"
        snapshots.mkdir(parents=True, exist_ok=True)
        staging = snapshots / f".incoming-{uuid.uuid4().hex}"
        try:
            shutil.copytree(folder, staging)
            files = {p.relative_to(staging).as_posix(): _sha256(p) for p in sorted(staging.rglob("*")) if p.is_file()}
            parent = self.head(repo_id)
            created = datetime.now(UTC).isoformat()
            body = json.dumps({"parent": parent, "message": message, "files": files, "created_at": created},
                              sort_keys=True)
            commit = hashlib.sha1(body.encode(), usedforsecurity=False).hexdigest()
            staging.rename(snapshots / commit)  # the commit appears whole, or not at all
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        with (repo / "commits.jsonl").open("a", encoding="utf-8") as log:
            log.write(json.dumps({"id": commit, "parent": parent, "message": message, "created_at": created,
                                  "files": files}) + "\n")
        _write_atomic(repo / "refs" / "heads" / BRANCH, commit + "\n")
        return commit

    def create_tag(self, repo_id: str, tag: str, commit: str) -> None:
        repo = self.repo_dir(repo_id)
        if not (repo / "snapshots" / commit).is_dir():
            raise InputNotFoundError(f"the local registry's {repo_id} has no commit {commit}")
        path = repo / "refs" / "tags" / tag
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise TagExistsError(f"{repo_id} already has a tag {tag} (another publish ran at the same time?): "
                                 "publish again for the next version") from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(commit + "\n")

    def delete_tag(self, repo_id: str, tag: str) -> None:
        (self.repo_dir(repo_id) / "refs" / "tags" / tag).unlink(missing_ok=True)

    def location(self, repo_id: str, revision: str) -> str:
        commit = self.tags(repo_id).get(revision, revision)
        return str(self.repo_dir(repo_id) / "snapshots" / commit)

    def files(self, repo_id: str, revision: str) -> list[str]:
        """The files of a tag or commit, sorted (what the Hub's file listing answers)."""
        folder = Path(self.location(repo_id, revision))
        if not folder.is_dir():
            raise InputNotFoundError(f"the local registry's {repo_id} has no revision {revision}")
        return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
