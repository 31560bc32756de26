"""The official `kaggle` client, as the launcher uses it: credentials checked first, push, status, output.

`import kaggle` authenticates at import time and, without credentials, prints its own help and calls
exit(); so credentials are checked here first (the same sources the client reads) and the client is
imported only then, with its import-time output swallowed.

kaggle 2.x's `KaggleApi` builds its HTTP client for api.kaggle.com unless KAGGLE_API_ENVIRONMENT is
LOCALHOST; kagglesdk itself honours every value of that variable (TEST = localhost:7777, what the tests'
local server answers on). `PromptlyKaggleApi` builds its client the kagglesdk way, which is the stock
behaviour whenever the variable is unset.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptly.errors import ConfigError, RemoteServiceError
from promptly.utils.redact import redact_text

CREDENTIALS_HELP = (
    "set KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN), or put kaggle.json in ~/.kaggle "
    "(Kaggle -> Settings -> API -> Create New Token)"
)
FINISHED = ("COMPLETE", "ERROR", "CANCEL_ACKNOWLEDGED")
"""Kernel states after which nothing changes (kagglesdk's KernelWorkerStatus names)."""


def _config_dir() -> Path:
    """Where the client looks for kaggle.json (its own rule: KAGGLE_CONFIG_DIR, ~/.kaggle, XDG)."""
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return Path(os.environ["KAGGLE_CONFIG_DIR"])
    home = Path.home() / ".kaggle"
    if home.exists() or not sys.platform.startswith("linux"):
        return home
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle"


def credentials_user() -> str | None:
    """The user of the configured credentials ("" for an access token, whose user the server knows), or
    None when there are none. Never returns or logs the key itself."""
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return os.environ["KAGGLE_USERNAME"]
    path = _config_dir() / "kaggle.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        if data.get("username") and data.get("key"):
            return str(os.environ.get("KAGGLE_USERNAME") or data["username"])
    token_files = [Path.home() / ".kaggle" / name for name in ("access_token", "access_token.txt")]
    if os.environ.get("KAGGLE_API_TOKEN") or any(p.is_file() for p in token_files):
        return os.environ.get("KAGGLE_USERNAME", "")
    return None


def require_credentials() -> str:
    """The credentials' user, or a ConfigError saying what to set (raised before anything is pushed)."""
    user = credentials_user()
    if user is None:
        raise ConfigError(f"no Kaggle credentials: {CREDENTIALS_HELP}")
    return user


def _import_api() -> Any:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        from kaggle.api.kaggle_api_extended import KaggleApi
    from kagglesdk import KaggleClient
    from kagglesdk.kaggle_env import get_env

    class PromptlyKaggleApi(KaggleApi):
        """KaggleApi whose HTTP client honours KAGGLE_API_ENVIRONMENT as kagglesdk defines it."""

        def build_kaggle_client(self) -> Any:
            return KaggleClient(env=get_env(), verbose=False,
                                username=self.config_values.get(self.CONFIG_NAME_USER),
                                password=self.config_values.get(self.CONFIG_NAME_KEY),
                                api_token=self.config_values.get(self.CONFIG_NAME_TOKEN),
                                response_processor=self.get_response_processor())

    return PromptlyKaggleApi


@dataclass(frozen=True)
class KernelStatus:
    state: str
    """QUEUED, RUNNING, COMPLETE, ERROR, CANCEL_REQUESTED, CANCEL_ACKNOWLEDGED (or UNKNOWN)."""
    message: str = ""

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


class KaggleSession:
    """One authenticated client for a launch: push a kernel folder, read its status, fetch its outputs.

    Errors from Kaggle become RemoteServiceError with the kernel named and credentials redacted.
    """

    def __init__(self) -> None:
        require_credentials()
        api = _import_api()()
        with contextlib.redirect_stdout(io.StringIO()) as out:
            try:
                api.authenticate()
            except SystemExit:
                raise ConfigError(f"Kaggle credentials were not accepted by the client: {CREDENTIALS_HELP}") from None
        self.api = api
        self._auth_output = out.getvalue()

    @property
    def user(self) -> str:
        return str(self.api.config_values.get(self.api.CONFIG_NAME_USER) or "")

    def check_access(self, user: str) -> None:
        """One cheap authenticated call, so bad credentials stop the launch before the first push."""
        self._call(f"listing {user}'s kernels", self.api.kernels_list, user=user, page_size=1)

    def push(self, folder: Path) -> str:
        """Push (save and run) the kernel in `folder`; returns the kernel's reference."""
        response = self._call(f"pushing {folder.name}", self.api.kernels_push, str(folder))
        if getattr(response, "error", None):
            raise RemoteServiceError(f"Kaggle refused kernel {folder.name}: {redact_text(str(response.error))}")
        return str(getattr(response, "ref", "") or "")

    def status(self, kernel: str) -> KernelStatus:
        response = self._call(f"reading the status of {kernel}", self.api.kernels_status, kernel)
        state = getattr(getattr(response, "status", None), "name", None) or "UNKNOWN"
        return KernelStatus(state=str(state), message=str(getattr(response, "failure_message", "") or ""))

    def output(self, kernel: str, dest: Path) -> list[Path]:
        """Download every output file of the kernel's latest run (and its log, <slug>.log) into dest."""
        dest.mkdir(parents=True, exist_ok=True)
        files, _ = self._call(f"downloading the output of {kernel}", self.api.kernels_output, kernel, str(dest),
                              force=True, quiet=True)
        return [Path(f) for f in files]

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        import requests

        try:
            with contextlib.redirect_stdout(io.StringIO()):
                return fn(*args, **kwargs)
        except requests.HTTPError as err:
            code = err.response.status_code if err.response is not None else None
            if code in (401, 403):
                raise RemoteServiceError(f"Kaggle refused {what} ({code}): check the credentials ({CREDENTIALS_HELP}) "
                                         "and that the kernel belongs to them") from None
            raise RemoteServiceError(f"Kaggle failed {what}: {redact_text(str(err))}") from None
        except (requests.ConnectionError, requests.Timeout) as err:
            raise RemoteServiceError(f"cannot reach Kaggle while {what}: {redact_text(str(err))}") from None
        except ValueError as err:  # the client's own validation (slugs, metadata)
            raise RemoteServiceError(f"Kaggle client refused {what}: {redact_text(str(err))}") from None
