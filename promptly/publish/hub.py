"""The Hugging Face Hub as a registry, through the official `huggingface_hub` client (HfApi).

The token comes from the environment variable `publish.hub.token_env` (HF_TOKEN) only, is passed to HfApi
explicitly (a token saved by `hf auth login` is never picked up), and never appears in a message: every
Hub error is turned into a RemoteServiceError that names the setting and the status.

`huggingface_hub` refuses every request while HF_HUB_OFFLINE is set, because on such a machine no download
may be attempted. Publishing to a Hub server named explicitly in `publish.hub.endpoint` (a mirror, a test
server) is not a download: for the duration of the push the client talks to that server, and only to it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from promptly.errors import ConfigError, RemoteServiceError
from promptly.utils.redact import redact_text

T = TypeVar("T")
PUBLIC_HUB = "https://huggingface.co"
BRANCH = "main"


class HubRegistry:
    """Repositories on the Hub at `endpoint`, written with the token in the environment variable `token_env`."""

    kind = "hub"

    def __init__(self, endpoint: str = PUBLIC_HUB, token_env: str = "HF_TOKEN") -> None:
        from huggingface_hub import HfApi

        self.endpoint = endpoint.rstrip("/")
        self._token = os.environ.get(token_env, "").strip()
        if not self._token:
            raise ConfigError(f"publish.registry=hub needs a write token in the {token_env} environment variable "
                              f"(publish.hub.token_env); create one at {self.endpoint}/settings/tokens")
        self._token_env = token_env
        self.api = HfApi(endpoint=self.endpoint, token=self._token)
        self._user: dict[str, Any] | None = None

    # -- errors -----------------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], T], repo_id: str | None = None) -> T:
        """Run one client call; a refusal becomes one line naming the setting, never the token."""
        import httpx2
        from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

        try:
            with _session_for(self.endpoint):
                return fn()
        except HfHubHTTPError as err:
            status = err.response.status_code if err.response is not None else None
            raise RemoteServiceError(self._explain(what, status, err, repo_id)) from None
        except (httpx2.HTTPError, OfflineModeIsEnabled, OSError) as err:
            reason = self._scrub(str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__)
            raise RemoteServiceError(f"cannot reach the Hub at publish.hub.endpoint={self.endpoint} while {what}: "
                                     f"{reason}") from None

    def _explain(self, what: str, status: int | None, err: Exception, repo_id: str | None) -> str:
        repo = f" {repo_id}" if repo_id else ""
        if status == 401:
            return (f"the Hub at {self.endpoint} refused the token in {self._token_env} while {what} (401): "
                    "check that it is a valid write token")
        if status == 403:
            return (f"the token in {self._token_env} may not write to{repo} on {self.endpoint} (403) while {what}: "
                    "use a repository of your own or of an organisation you can write to (publish.repo_id)")
        if status == 404:
            return f"the Hub at {self.endpoint} has no{repo} (404) while {what}"
        detail = self._scrub(str(getattr(err, "server_message", "") or err).strip().splitlines()[0][:300])
        return f"the Hub at {self.endpoint} failed while {what} ({status}): {detail}"

    def _scrub(self, text: str) -> str:
        return redact_text(text.replace(self._token, "***"))

    # -- Registry ---------------------------------------------------------------------------------
    def whoami(self) -> dict[str, Any]:
        if self._user is None:
            self._user = self._call("checking the token (whoami)", lambda: self.api.whoami(token=self._token))
        return self._user

    def resolve_repo_id(self, repo_id: str) -> str:
        """owner/name; a bare name gets the token's user; an owner the token cannot write as is refused here,
        before anything is uploaded."""
        user = self.whoami()
        name = str(user.get("name", ""))
        orgs = sorted(str(o.get("name")) for o in user.get("orgs", []) if o.get("name"))
        parts = [p for p in repo_id.strip().split("/") if p]
        if len(parts) == 1:
            parts = [name, parts[0]]
        if len(parts) != 2:
            raise ConfigError(f"publish.repo_id={repo_id!r} must be a name or owner/name")
        if parts[0] not in (name, *orgs):
            mine = ", ".join([name, *orgs])
            raise RemoteServiceError(f"publish.repo_id={'/'.join(parts)} belongs to {parts[0]!r}, but the token in "
                                     f"{self._token_env} writes as {mine}: publish to one of those namespaces")
        return "/".join(parts)

    def ensure_repo(self, repo_id: str, private: bool) -> None:
        self._call("creating the repository", lambda: self.api.create_repo(
            repo_id, private=private, exist_ok=True, repo_type="model"), repo_id)

    def tags(self, repo_id: str) -> dict[str, str]:
        from huggingface_hub.errors import RepositoryNotFoundError

        def refs() -> dict[str, str]:
            try:
                found = self.api.list_repo_refs(repo_id, repo_type="model")
            except RepositoryNotFoundError:
                return {}
            return {t.name: t.target_commit for t in found.tags}

        return self._call("listing the repository's tags", refs, repo_id)

    def commit_folder(self, repo_id: str, folder: Path, message: str) -> str:
        """One commit that adds the folder's files and deletes the branch's files the folder lacks."""
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        local = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        remote = self._call("listing the repository's files",
                            lambda: self.api.list_repo_files(repo_id, repo_type="model", revision=BRANCH), repo_id)
        stale = [p for p in remote if p not in set(local) and p != ".gitattributes"]
        operations: list[Any] = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(folder / p)) for p in local]
        operations += [CommitOperationDelete(path_in_repo=p) for p in stale]
        info = self._call("uploading the version (one commit)", lambda: self.api.create_commit(
            repo_id, operations, commit_message=message, repo_type="model", revision=BRANCH), repo_id)
        return str(info.oid)

    def create_tag(self, repo_id: str, tag: str, commit: str) -> None:
        self._call(f"tagging {tag}", lambda: self.api.create_tag(
            repo_id, tag=tag, revision=commit, tag_message=f"promptly {tag}", repo_type="model"), repo_id)

    def delete_tag(self, repo_id: str, tag: str) -> None:
        self._call(f"removing tag {tag}", lambda: self.api.delete_tag(repo_id, tag=tag, repo_type="model"), repo_id)

    def location(self, repo_id: str, revision: str) -> str:
        return f"{self.endpoint}/{repo_id}/tree/{revision}"


@contextmanager
def _session_for(endpoint: str) -> Iterator[None]:
    """The client's HTTP session, allowed to reach `endpoint` (and nothing else) while HF_HUB_OFFLINE is set."""
    from huggingface_hub import constants
    from huggingface_hub.utils import _http

    if not constants.is_offline_mode():
        yield
        return
    if endpoint.rstrip("/") == PUBLIC_HUB:
        raise ConfigError("HF_HUB_OFFLINE is set, so the public Hub cannot be reached: unset it to publish there, "
                          "or publish to the local registry (publish.registry=local) or to another Hub server "
                          "(publish.hub.endpoint)")
    import httpx2

    allowed = urlsplit(endpoint)

    def only_the_named_server(request: Any) -> None:
        if (request.url.scheme, request.url.netloc.decode() if isinstance(request.url.netloc, bytes)
                else request.url.netloc) != (allowed.scheme, allowed.netloc):
            raise ConnectionError(f"HF_HUB_OFFLINE is set: only publish.hub.endpoint={endpoint} may be reached, "
                                  f"not {request.url.scheme}://{request.url.host}")

    previous = getattr(_http, "_GLOBAL_CLIENT_FACTORY", _http.default_client_factory)
    _http.set_client_factory(lambda: httpx2.Client(event_hooks={"request": [only_the_named_server]},
                                                    follow_redirects=True, timeout=None))
    try:
        yield
    finally:
        _http.set_client_factory(previous)
