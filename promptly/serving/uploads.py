"""What POST /v1/uploads checks before it queues a file, and where the raw file waits meanwhile.

The checks are the cheap ones, answered at once as the client's error: a supported suffix, a size within
serve.max_upload_bytes, some content, and UTF-8 for text files. Reading a PDF is left to the job.

A raw upload may hold personal data that redaction has not yet replaced, so it is only ever written
mode 0600 inside folders of mode 0700 (`<uploads_dir>/.jobs/<job id>/<name>`), and the job deletes it
once it ends, whatever the outcome: only the redacted text in the store remains.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from promptly.errors import ConfigError, PromptlyError

ALLOWED = (".pdf", ".md", ".markdown", ".txt")
TEXT_SUFFIXES = (".md", ".markdown", ".txt")
JOBS_FOLDER = ".jobs"
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


class UploadTooLargeError(PromptlyError):
    """Larger than serve.max_upload_bytes (413)."""


def checked_name(filename: str, data: bytes, max_bytes: int) -> str:
    """The file name made safe as a path part and an id part, once the upload passed the cheap checks."""
    name = _UNSAFE.sub("_", Path(filename).name).strip(" .")
    suffix = Path(name).suffix.lower()
    if not name or suffix not in ALLOWED:
        raise ConfigError(f"upload {filename!r}: only {', '.join(ALLOWED)} files are accepted")
    if len(data) > max_bytes:
        raise UploadTooLargeError(f"upload {filename!r} is larger than serve.max_upload_bytes={max_bytes}")
    if not data.strip():
        raise ConfigError(f"upload {filename!r} is empty")
    if suffix in TEXT_SUFFIXES:
        try:
            data.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise ConfigError(f"upload {filename!r} could not be read: not valid UTF-8 (byte {err.start}): "
                              "re-save the file as UTF-8") from None
    return name


def private_folder(path: Path) -> Path:
    """`path` (and any missing parent) created, and set to mode 0700: readable by the server's user only."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_private(folder: Path, name: str, data: bytes) -> Path:
    """`data` written to `folder/name` with mode 0600 from the first byte (never briefly world-readable)."""
    target = private_folder(folder) / name
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return target


def jobs_root(uploads_dir: Path) -> Path:
    """Where queued raw files wait: nothing there outlives the process that queued it."""
    private_folder(uploads_dir)  # 0700 also shields files an older version kept beside the owners' folders
    return private_folder(uploads_dir / JOBS_FOLDER)


def remove_raw(folder: Path) -> None:
    """Delete a job's folder with its raw file (missing already is fine)."""
    shutil.rmtree(folder, ignore_errors=True)
