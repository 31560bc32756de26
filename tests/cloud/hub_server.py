"""A local stand-in for the Hugging Face Hub: the routes `huggingface_hub.HfApi` calls to publish a model.

whoami, repository creation, preupload, YAML validation, the NDJSON commit, refs, the file tree, and tag
creation/deletion, with the Hub's status codes and `X-Error-Code` headers, so the real client raises the
errors it raises against the Hub. Every request needs `Authorization: Bearer <token>`. Files are kept in
memory per commit; every file is answered `regular` at preupload (inline base64 in the commit), so no LFS
or Xet storage is needed. `fail_next_commit` makes the next commit fail as a server error would,
after the client has sent everything.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

Response = tuple[int, dict[str, str], Any]
_REPO = r"/api/models/(?P<repo>[^/]+/[^/]+)"


@dataclass
class HubRepo:
    """One model repository: commits (id -> {path: bytes}), the main branch, tags and settings."""

    repo_id: str
    private: bool
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    main: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)


class HubServer:
    """`with HubServer(token, user, orgs) as hub:` serves hub.url; hub.repos holds what was pushed."""

    def __init__(self, token: str, user: str = "me", orgs: tuple[str, ...] = ()) -> None:
        self.token, self.user, self.orgs = token, user, orgs
        self.repos: dict[str, HubRepo] = {}
        self.requests: list[str] = []  # "METHOD /path" of every request
        self.fail_next_commit = False
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.app = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """The files of a branch, tag or commit (what a download of that revision would get)."""
        repo = self.repos[repo_id]
        commit = repo.main if revision == "main" else repo.tags.get(revision, revision)
        return dict(repo.commits[commit])

    # -- routing ----------------------------------------------------------------------------------
    def handle(self, method: str, target: str, headers: Any, body: bytes) -> Response:
        path = unquote(urlsplit(target).path)
        self.requests.append(f"{method} {path}")
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"X-Error-Message": "Invalid credentials in Authorization header"}, {
                "error": "Invalid credentials in Authorization header"}
        routes: list[tuple[str, str, Any]] = [
            ("GET", r"/api/whoami-v2", self._whoami),
            ("POST", r"/api/repos/create", self._create_repo),
            ("POST", r"/api/validate-yaml", lambda m, b: (200, {}, {"errors": [], "warnings": []})),
            ("GET", _REPO + r"/refs", self._refs),
            ("POST", _REPO + r"/preupload/(?P<rev>[^/]+)", self._preupload),
            ("POST", _REPO + r"/commit/(?P<rev>[^/]+)", self._commit),
            ("GET", _REPO + r"/tree/(?P<rev>[^/]+)(?:/(?P<sub>.*))?", self._tree),
            ("POST", _REPO + r"/tag/(?P<rev>[^/]+)", self._create_tag),
            ("DELETE", _REPO + r"/tag/(?P<tag>[^/]+)", self._delete_tag),
        ]
        for verb, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                with self._lock:
                    return handler(match, body)
        return 404, {}, {"error": f"no route {method} {path} on this test Hub"}

    def _repo(self, match: re.Match[str]) -> HubRepo | None:
        return self.repos.get(match["repo"])

    @staticmethod
    def _no_repo(match: re.Match[str]) -> Response:
        return 404, {"X-Error-Code": "RepoNotFound"}, {"error": f"Repository not found: {match['repo']}"}

    def _may_write(self, namespace: str) -> bool:
        return namespace in (self.user, *self.orgs)

    # -- handlers ---------------------------------------------------------------------------------
    def _whoami(self, match: re.Match[str], body: bytes) -> Response:
        return 200, {}, {"type": "user", "name": self.user, "orgs": [{"name": o} for o in self.orgs],
                         "auth": {"accessToken": {"role": "write"}}}

    def _create_repo(self, match: re.Match[str], body: bytes) -> Response:
        data = json.loads(body)
        namespace = data.get("organization") or self.user
        repo_id = f"{namespace}/{data['name']}"
        if not self._may_write(namespace):
            return 403, {}, {"error": f"You don't have the rights to create a model under the namespace {namespace}"}
        if repo_id in self.repos:
            return 409, {}, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"}
        private = data.get("visibility", "private" if data.get("private") else "public") == "private"
        self.repos[repo_id] = HubRepo(repo_id, private=private)
        return 200, {}, {"url": f"{self.url}/{repo_id}", "name": repo_id}

    def _refs(self, match: re.Match[str], body: bytes) -> Response:
        repo = self._repo(match)
        if repo is None:
            return self._no_repo(match)
        branches = [{"name": "main", "ref": "refs/heads/main", "targetCommit": repo.main}] if repo.main else []
        tags = [{"name": t, "ref": f"refs/tags/{t}", "targetCommit": c} for t, c in sorted(repo.tags.items())]
        return 200, {}, {"branches": branches, "converts": [], "tags": tags, "pullRequests": []}

    def _preupload(self, match: re.Match[str], body: bytes) -> Response:
        if self._repo(match) is None:
            return self._no_repo(match)
        files = json.loads(body)["files"]
        return 200, {}, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                                   for f in files]}

    def _commit(self, match: re.Match[str], body: bytes) -> Response:
        repo = self._repo(match)
        if repo is None:
            return self._no_repo(match)
        if not self._may_write(repo.repo_id.split("/")[0]):
            return 403, {}, {"error": "You don't have the rights to push to this repository"}
        if self.fail_next_commit:
            self.fail_next_commit = False
            return 500, {}, {"error": "Internal Error - We're working hard to fix this as soon as possible!"}
        tree = dict(repo.commits.get(repo.main, {}))
        header: dict[str, Any] = {}
        for line in body.decode().splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                header = value
            elif key == "file":
                tree[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                tree.pop(value["path"], None)
            else:
                return 400, {}, {"error": f"this test Hub does not take {key} operations"}
        digest = hashlib.sha1(repo.main.encode(), usedforsecurity=False)
        for path in sorted(tree):
            digest.update(path.encode() + b"\0" + hashlib.sha256(tree[path]).digest())
        commit = digest.hexdigest()
        repo.commits[commit], repo.main, repo.messages[commit] = tree, commit, str(header.get("summary", ""))
        return 200, {}, {"commitUrl": f"{self.url}/{repo.repo_id}/commit/{commit}", "commitOid": commit,
                         "pullRequestUrl": None}

    def _tree(self, match: re.Match[str], body: bytes) -> Response:
        repo = self._repo(match)
        if repo is None:
            return self._no_repo(match)
        rev = match["rev"]
        if rev == "main" and not repo.main:
            return 200, {}, []  # a new repository's empty branch
        commit = repo.main if rev == "main" else repo.tags.get(rev, rev)
        if commit not in repo.commits:
            return 404, {"X-Error-Code": "RevisionNotFound"}, {"error": f"Invalid rev id: {rev}"}
        files = repo.commits[commit]
        return 200, {}, [{"type": "file", "path": p, "size": len(files[p]),
                          "oid": hashlib.sha1(files[p], usedforsecurity=False).hexdigest()} for p in sorted(files)]

    def _create_tag(self, match: re.Match[str], body: bytes) -> Response:
        repo = self._repo(match)
        if repo is None:
            return self._no_repo(match)
        tag, rev = json.loads(body)["tag"], match["rev"]
        commit = repo.main if rev == "main" else rev
        if commit not in repo.commits:
            return 404, {"X-Error-Code": "RevisionNotFound"}, {"error": f"Invalid rev id: {rev}"}
        if tag in repo.tags:
            return 409, {}, {"error": f"Tag {tag} already exists"}
        repo.tags[tag] = commit
        return 200, {}, {}

    def _delete_tag(self, match: re.Match[str], body: bytes) -> Response:
        repo = self._repo(match)
        if repo is None:
            return self._no_repo(match)
        if repo.tags.pop(match["tag"], None) is None:
            return 404, {"X-Error-Code": "RevisionNotFound"}, {"error": f"Invalid rev id: {match['tag']}"}
        return 200, {}, {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        app: HubServer = self.server.app  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, extra, payload = app.handle(self.command, self.path, self.headers, body)
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **extra}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass
