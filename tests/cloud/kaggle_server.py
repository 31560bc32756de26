"""A local stand-in for Kaggle's kernels API: the kagglesdk routes the installed `kaggle` client (2.x) calls.

POST /api/v1/kernels.KernelsApiService/{ListKernels, SaveKernel, GetKernelSessionStatus,
ListKernelSessionOutput} with HTTP basic auth (username + key, as the client sends a legacy key);
output files are served at GET /files/<slug>/<path> like Kaggle's signed URLs (no auth, Content-Length
and Last-Modified, which the client's downloader reads). The client reaches it with
KAGGLE_API_ENVIRONMENT=TEST, i.e. http://localhost:7777: a fixed port, so one server at a time.

A pushed notebook really runs: executed with nbclient in a working folder of its own (Kaggle's
/kaggle/working), attached datasets linked under an input folder ($PROMPTLY_KAGGLE_INPUT, Kaggle's
/kaggle/input), the account's Kaggle Secrets given to it as environment variables (what
`kaggle_secrets` would hand over). Its cell outputs become the kernel log, in Kaggle's JSON form.
Kernels whose slug is in `hang` ('*': all) stay RUNNING until `release`d (for timeouts).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

PORT = 7777
SERVICE = "/api/v1/kernels.KernelsApiService/"


@dataclass
class Kernel:
    ref: str
    request: dict[str, Any]
    """The SaveKernel request as the client sent it (notebook text included)."""
    workdir: Path
    state: str = "QUEUED"
    log: list[dict[str, Any]] = field(default_factory=list)
    failure: str = ""
    thread: threading.Thread | None = None


class KaggleServer:
    """`with KaggleServer(root, user, key, secrets=..., datasets=...) as kaggle:`; kaggle.kernels holds pushes."""

    def __init__(self, root: Path, user: str, key: str, secrets: dict[str, str] | None = None,
                 datasets: dict[str, Path] | None = None, hang: tuple[str, ...] = (),
                 base_env: dict[str, str] | None = None) -> None:
        self.root, self.user, self.key = root, user, key
        self.secrets, self.datasets, self.hang = secrets or {}, datasets or {}, hang
        self.base_env = base_env if base_env is not None else dict(os.environ)
        self.kernels: dict[str, Kernel] = {}
        self.requests: list[str] = []
        self.pushed_bodies: list[str] = []  # every SaveKernel body, verbatim
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", PORT), _Handler)
        self._httpd.app = self  # type: ignore[attr-defined]
        self.url = f"http://localhost:{PORT}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> KaggleServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        for t in self._threads:
            t.join(timeout=600)

    def authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        return base64.b64decode(header[6:]).decode() == f"{self.user}:{self.key}"

    # --- routes -------------------------------------------------------------------------------
    def list_kernels(self, body: dict[str, Any]) -> dict[str, Any]:
        mine = [k for k in self.kernels.values() if k.ref.split("/")[0] == body.get("user", self.user)]
        return {"kernels": [{"ref": k.ref, "title": k.request.get("newTitle", ""), "slug": k.ref.split("/")[1]}
                            for k in mine][: int(body.get("pageSize") or 20)], "nextPageToken": ""}

    def save_kernel(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        slug = str(body.get("slug") or "")
        owner, _, name = slug.partition("/")
        if owner != self.user:
            return 403, {"code": 403, "message": f"Permission denied on kernel {slug}"}
        missing = [d for d in body.get("datasetDataSources", []) if d not in self.datasets]
        if missing:
            return 200, {"ref": "", "url": "", "error": f"Dataset(s) not found: {', '.join(missing)}"}
        workdir = self.root / name / "working"
        if workdir.parent.exists():
            shutil.rmtree(workdir.parent)
        workdir.mkdir(parents=True)
        kernel = Kernel(ref=slug, request=body, workdir=workdir)
        with self._lock:
            self.kernels[slug] = kernel
        if name in self.hang or "*" in self.hang:
            kernel.state = "RUNNING"
        else:
            self.release(slug)
        return 200, {"ref": f"/code/{slug}", "url": f"{self.url}/code/{slug}", "versionNumber": 1, "invalidTags": []}

    def status(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        kernel = self.kernels.get(f"{body.get('userName')}/{body.get('kernelSlug')}")
        if kernel is None:
            return 404, {"code": 404, "message": "Notebook not found"}
        out: dict[str, Any] = {"status": kernel.state}
        if kernel.failure:
            out["failureMessage"] = kernel.failure
        return 200, out

    def output(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        kernel = self.kernels.get(f"{body.get('userName')}/{body.get('kernelSlug')}")
        if kernel is None:
            return 404, {"code": 404, "message": "Notebook not found"}
        name = kernel.ref.split("/")[1]
        files = sorted(p.relative_to(kernel.workdir).as_posix() for p in kernel.workdir.rglob("*") if p.is_file())
        return 200, {"files": [{"fileName": f, "url": f"{self.url}/files/{name}/{quote(f)}"} for f in files],
                     "log": json.dumps(kernel.log)}

    # --- running a pushed notebook ----------------------------------------------------------------
    def release(self, ref: str) -> None:
        """Run the kernel `ref` (owner/slug) now, in a thread."""
        thread = threading.Thread(target=self._run, args=(self.kernels[ref],), daemon=True)
        self._threads.append(thread)
        self.kernels[ref].thread = thread
        thread.start()

    def wait(self, ref: str, timeout: float = 900) -> None:
        thread = self.kernels[ref].thread
        if thread is not None:
            thread.join(timeout)

    def _run(self, kernel: Kernel) -> None:
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError

        inputs = kernel.workdir.parent / "input"
        inputs.mkdir()
        for ref in kernel.request.get("datasetDataSources", []):
            (inputs / ref.split("/")[1]).symlink_to(self.datasets[ref], target_is_directory=True)
        env = {**self.base_env, **self.secrets, "PROMPTLY_KAGGLE_INPUT": str(inputs),
               "PROMPTLY_HOME": str(kernel.workdir.parent / "home")}
        nb = nbformat.reads(kernel.request["text"], as_version=4)
        kernel.state = "RUNNING"
        started = time.monotonic()
        try:
            NotebookClient(nb, timeout=900, kernel_name="python3",
                           resources={"metadata": {"path": str(kernel.workdir)}}).execute(env=env)
        except CellExecutionError as err:
            kernel.failure = str(err).strip().splitlines()[-1][:500]
        except Exception as err:  # the kernel could not start: Kaggle reports an error too
            kernel.failure = f"{type(err).__name__}: {err}"[:500]
        for cell in nb.cells:
            for o in cell.get("outputs", []):
                text = o.get("text") or "\n".join(o.get("traceback", [])) or ""
                if text:
                    kernel.log.append({"stream_name": o.get("name", "stderr"), "time": time.monotonic() - started,
                                       "data": text if text.endswith("\n") else text + "\n"})
        kernel.state = "ERROR" if kernel.failure else "COMPLETE"


class _Handler(BaseHTTPRequestHandler):
    server_version = "kaggle-local/0"

    def log_message(self, *args: Any) -> None:
        pass

    @property
    def app(self) -> KaggleServer:
        return self.server.app  # type: ignore[attr-defined,no-any-return]

    def _send(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(code)
        for k, v in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        self.app.requests.append(f"GET {path}")
        if not path.startswith("/files/"):
            return self._send(404, {"code": 404, "message": "not found"})
        name, _, rel = unquote(path[len("/files/"):]).partition("/")
        kernel = next((k for k in self.app.kernels.values() if k.ref.split("/")[1] == name), None)
        file = kernel.workdir / rel if kernel else None
        if file is None or not file.is_file() or ".." in Path(rel).parts:
            return self._send(404, {"code": 404, "message": "not found"})
        self._send(200, file.read_bytes(), {"Content-Type": "application/octet-stream",
                                            "Last-Modified": formatdate(file.stat().st_mtime, usegmt=True)})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        self.app.requests.append(f"POST {path}")
        if not self.app.authorized(self.headers.get("Authorization")):
            return self._send(401, {"code": 401, "message": "Unauthenticated"})
        route = path[len(SERVICE):] if path.startswith(SERVICE) else ""
        if route == "ListKernels":
            return self._send(200, self.app.list_kernels(body))
        if route == "SaveKernel":
            self.app.pushed_bodies.append(json.dumps(body))
            return self._send(*self.app.save_kernel(body))
        if route == "GetKernelSessionStatus":
            return self._send(*self.app.status(body))
        if route == "ListKernelSessionOutput":
            return self._send(*self.app.output(body))
        self._send(404, {"code": 404, "message": f"no route {path}"})
