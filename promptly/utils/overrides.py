"""Hydra override values written from free text (the CLI's positional question, the Kaggle bundle's
W&B names): one quoting rule wherever promptly builds a command line."""

from __future__ import annotations

import re


def quote(text: str) -> str:
    """Free text as one quoted Hydra override value, kept as typed: quotes and the backslashes before
    them are escaped (Hydra's rule), and `${` is escaped so OmegaConf never interpolates it."""
    text = text.replace("${", "\\${")
    text = re.sub(r"(\\*)'", lambda m: m[1] * 2 + "\\'", text)
    text = re.sub(r"(\\+)$", lambda m: m[1] * 2, text)
    return f"'{text}'"
