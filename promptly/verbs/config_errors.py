"""Config mistakes explained in one line that points at the fix.

Hydra answers a mistyped key with "To append to your config use +retrieval.kk=3" (which would make the
typo stick) and a mistyped option with its config search path. Here the same errors name the nearest
valid keys or options (difflib over the schema's keys), so `retrieval.kk=3` answers "did you mean
retrieval.k?".
"""

from __future__ import annotations

import difflib
import re

from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

UnknownKey = ConfigAttributeError | ConfigKeyError

SCHEMA_NAME = re.compile(r"^(base_.*|.*_schema)$")
"""Schema nodes registered in the ConfigStore (promptly/verbs/schemas.py): listed by Hydra, never chosen."""


def nearest(word: str, choices: list[str], limit: int = 3) -> list[str]:
    """The closest choices first; a prefix match counts when difflib finds nothing (`lr` -> `learning_rate`)."""
    close = difflib.get_close_matches(word, choices, n=limit, cutoff=0.6)
    return close or [c for c in choices if c.startswith(word) or word.startswith(c)][:limit]


def unknown_key(err: ConfigAttributeError | ConfigKeyError) -> str:
    full_key = str(getattr(err, "full_key", "") or getattr(err, "key", ""))
    key = str(getattr(err, "key", full_key.rpartition(".")[2]))
    prefix = full_key[: -len(key)] if full_key.endswith(key) else ""
    parent = getattr(err, "parent_node", None)
    valid = [str(k) for k in parent if not str(k).startswith("_") and str(k) != "hydra"] \
        if isinstance(parent, DictConfig) else []
    message = f"unknown config key {full_key!r}"
    close = nearest(key, valid)
    if close:
        message += f"; did you mean {' or '.join(prefix + c for c in close)}?"
    else:
        message += "."
    if valid:
        message += f" Valid keys{' under ' + prefix.rstrip('.') if prefix else ''}: {', '.join(sorted(valid))}"
    return message


def missing_option(err: MissingConfigException) -> str:
    """`store=postgress`: the group's real options (schemas left out), the nearest first."""
    text = str(err)
    wanted = re.search(r"Could not find '([^']+)'", text)
    group, _, option = (wanted.group(1) if wanted else "").rpartition("/")
    listed = re.search(r"Available options in '[^']*':\n(.*?)(?:\nConfig search path:|$)", text, re.S)
    options = [o.strip() for o in listed.group(1).splitlines() if o.strip()] if listed else []
    options = [o for o in options if not SCHEMA_NAME.match(o)]
    if not wanted or not options:
        return text.split("\nConfig search path:")[0].strip()
    message = f"unknown option {group}={option}"
    close = nearest(option, options)
    if close:
        message += f"; did you mean {' or '.join(f'{group}={c}' for c in close)}?"
    return message + f" Options for {group}: {', '.join(options)}"


def explain(err: BaseException) -> str | None:
    """One line for a config mistake Hydra raised while composing; None for anything else."""
    if isinstance(err, MissingConfigException):
        return missing_option(err)
    if isinstance(err, ConfigCompositionException) and isinstance(err.__cause__, UnknownKey):
        return unknown_key(err.__cause__)
    if isinstance(err, UnknownKey):
        return unknown_key(err)
    if isinstance(err, ConfigCompositionException | OverrideParseException):
        message = str(err).split("\nConfig search path:")[0].strip().replace("\n", " ")
        cause = str(err.__cause__).splitlines()[0] if err.__cause__ is not None and str(err.__cause__) else ""
        return f"{message}: {cause}" if cause else message
    return None
