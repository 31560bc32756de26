"""promptly's user errors: problems a user can fix, shown as one line without a traceback.

Anything else that escapes a verb is a bug and keeps its traceback. Each class also derives from the
builtin it refines, so callers that catch ValueError or FileNotFoundError keep working. Messages name
the setting to change and never a secret.
"""

from __future__ import annotations


class PromptlyError(Exception):
    """Base of every error the CLI prints as one line (exit status 1)."""


class ConfigError(PromptlyError, ValueError):
    """A setting is missing, malformed or contradicts another one."""


class InputNotFoundError(PromptlyError, FileNotFoundError):
    """A file, folder, run or checkpoint the settings point at does not exist."""


class EmptyInputError(PromptlyError, ValueError):
    """The input exists but holds nothing to work on (an empty question, split or store)."""


class ModelLoadError(PromptlyError, RuntimeError):
    """A model or checkpoint could not be loaded as configured (missing package, mismatched weights)."""


class RemoteServiceError(PromptlyError, RuntimeError):
    """A cloud service or server (Hub, Kaggle, an OpenAI-compatible endpoint) refused or failed a request."""


class DocumentError(ValueError):
    """A file's content cannot be turned into text. Not a PromptlyError on purpose: ingest reports the
    document and skips it, the verb goes on."""
