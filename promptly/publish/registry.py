"""What a model registry does for `promptly publish`: the Hub and the local folder registry implement it.

A push is: create the repository if missing, put a folder in ONE commit (the branch then holds exactly
those files), then tag that commit with the version. The tag comes last, so a failed upload leaves no tag;
a tag is only removed again when recording the version in the store fails.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

VERSION_TAG = re.compile(r"v(\d+)")


class Registry(Protocol):
    """A place that keeps repositories of model files, with commits and tags."""

    kind: str
    """local or hub (recorded with each version)."""

    def resolve_repo_id(self, repo_id: str) -> str:
        """owner/name for `repo_id` (a bare name gets the default owner); refuses an owner one cannot write as."""
        ...

    def ensure_repo(self, repo_id: str, private: bool) -> None:
        """Create the repository when it does not exist."""
        ...

    def tags(self, repo_id: str) -> dict[str, str]:
        """Tag name -> commit id ({} for a repository that does not exist yet)."""
        ...

    def commit_folder(self, repo_id: str, folder: Path, message: str) -> str:
        """Make the branch hold exactly the folder's files, in one commit; return the commit id."""
        ...

    def create_tag(self, repo_id: str, tag: str, commit: str) -> None:
        """Tag a commit; an existing tag is an error (versions are never moved)."""
        ...

    def delete_tag(self, repo_id: str, tag: str) -> None:
        """Remove a tag (only to undo a push whose version could not be recorded)."""
        ...

    def location(self, repo_id: str, revision: str) -> str:
        """Where a loader finds this revision's files (a folder, or a Hub URL)."""
        ...


def version_number(tag: str) -> int | None:
    """3 for v3; None for tags that are not versions."""
    match = VERSION_TAG.fullmatch(tag)
    return int(match[1]) if match else None


def next_version(*taken: str) -> str:
    """The version after every v<N> among `taken` (tags and recorded versions): v1 for none."""
    numbers = [n for n in map(version_number, taken) if n is not None]
    return f"v{max(numbers, default=0) + 1}"
