"""The W&B logger as promptly configures it: offline without an API key, named by the sweep."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch.loggers import WandbLogger

from promptly.utils.naming import run_identity
from promptly.utils.redact import redact_override


@contextmanager
def redacted_argv() -> Iterator[None]:
    """W&B stores the command line in the run's metadata: hide credentials passed as overrides."""
    saved = sys.argv
    sys.argv = [saved[0], *(redact_override(a) for a in saved[1:])]
    try:
        yield
    finally:
        sys.argv = saved


class RedactingWandbLogger(WandbLogger):
    """WandbLogger whose run starts with secrets removed from the recorded command line."""

    @property
    def experiment(self) -> Any:
        if self._experiment is None:
            with redacted_argv():
                return super().experiment
        return super().experiment


def wandb_offline(offline: bool | None) -> bool:
    """Explicit setting first, then WANDB_MODE, then: offline exactly when no WANDB_API_KEY is set."""
    if offline is not None:
        return offline
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "dryrun", "disabled"):
        return True
    if mode == "online":
        return False
    return not os.environ.get("WANDB_API_KEY")


def wandb_logger(project: str = "promptly", entity: str | None = None, name: str | None = None,
                 group: str | None = None, tags: Sequence[str] = (), job_type: str = "train",
                 save_dir: str = ".", offline: bool | None = None, log_model: Literal["all"] | bool = False,
                 **kwargs: Any) -> RedactingWandbLogger:
    """WandbLogger(name, group, tags derived from the run identity unless given). Creating it starts
    nothing: the W&B run begins when Lightning first logs."""
    ident = run_identity()
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    all_tags = list(dict.fromkeys([*ident.tags, *tags]))
    is_offline = wandb_offline(offline)
    if is_offline and log_model:
        # Lightning refuses log_model with offline=True, but W&B keeps artifacts of an offline run
        # (uploaded by `wandb sync`): ask W&B itself for offline mode instead.
        kwargs.setdefault("mode", "offline")
        is_offline = False
    return RedactingWandbLogger(project=project, entity=entity, name=name or ident.name,
                                group=group or ident.group, tags=[t[:64] for t in all_tags], job_type=job_type,
                                save_dir=save_dir, offline=is_offline, log_model=log_model, **kwargs)
