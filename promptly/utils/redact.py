"""Secrets out of saved and logged configs: values of secret-named keys, passwords in URLs and
connection strings, and well-known token shapes anywhere in a string."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

MASK = "***"
_SECRET_KEY = re.compile(r"(?:^|[_.\-])(?:api[_\-]?key|key|token|secret|password|passwd|pwd|credentials?|"
                         r"auth|private[_\-]?key)$|^(?:key|token|secret|password|auth)$", re.IGNORECASE)
_HARMLESS_KEYS = {"pad_token", "bos_token", "eos_token", "unk_token", "sep_token", "cls_token", "mask_token",
                  "monitor", "sort_key", "key_column"}
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.\-]*://[^:/@\s]*:)(?P<secret>[^@/\s]+)(?P<tail>@)",
                           re.IGNORECASE)
_CONNINFO_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<secret>'[^']*'|[^\s'\"]+)", re.IGNORECASE)
_QUERY_SECRET = re.compile(r"(?P<head>[?&](?:api_?key|key|token|access_token|secret|password|sig)=)"
                           r"(?P<secret>[^&\s#]+)", re.IGNORECASE)
_TOKEN_SHAPES = re.compile(
    r"\b(?:hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9_\-]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
    r"|xox[abpr]-[A-Za-z0-9\-]{10,}|AKIA[A-Z0-9]{16}|eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"
    r"|KGAT_[A-Za-z0-9]{16,})"
)


def is_secret_key(key: str) -> bool:
    name = str(key).rsplit(".", 1)[-1]
    return name.lower() not in _HARMLESS_KEYS and bool(_SECRET_KEY.search(name))


_WEBHOOK_PATH = re.compile(
    r"(?P<head>https?://(?:hooks\.slack\.com/(?:services|workflows|triggers)|(?:[a-z]+\.)?discord(?:app)?\.com/api/"
    r"webhooks|[^/\s]+/(?:webhooks?|hooks))/)(?P<secret>[^\s\"'?#]+)", re.IGNORECASE)

SECRET_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY", "KAGGLE_KEY", "OPENAI_API_KEY",
                   "SUPABASE_SERVICE_KEY", "SUPABASE_ANON_KEY", "SUPABASE_KEY", "PROMPTLY_API_KEY",
                   "PROMPTLY_DATABASE_URL", "PROMPTLY_WEBHOOK_URL", "SLACK_WEBHOOK_URL", "DISCORD_WEBHOOK_URL",
                   "GITHUB_TOKEN")
"""Variables whose values are secrets wherever they appear, whatever their shape (read at each call,
so a variable set after start-up is covered too)."""


def _env_secrets() -> list[str]:
    values = (os.environ.get(name, "") for name in SECRET_ENV_VARS)
    return sorted({v for v in values if len(v) >= 8}, key=len, reverse=True)


def redact_text(text: str) -> str:
    """Mask credentials embedded in a string (URLs, conninfo, query strings, webhook paths, token shapes,
    and the values of the secret environment variables)."""
    for secret in _env_secrets():
        text = text.replace(secret, MASK)
    text = _URL_PASSWORD.sub(lambda m: m["head"] + MASK + m["tail"], text)
    text = _CONNINFO_PASSWORD.sub(lambda m: m["head"] + MASK, text)
    text = _QUERY_SECRET.sub(lambda m: m["head"] + MASK, text)
    text = _WEBHOOK_PATH.sub(lambda m: m["head"] + MASK, text)
    return _TOKEN_SHAPES.sub(MASK, text)


def redact(value: Any, key: str = "") -> Any:
    """A redacted copy of plain data (dicts, lists, scalars)."""
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, key) for v in value]
    if isinstance(value, str):
        if value and key and is_secret_key(key) and not value.startswith("${"):
            return MASK
        return redact_text(value)
    return value


def redact_override(override: str) -> str:
    """`store.key=abc` -> `store.key=***`; other overrides keep their value, minus embedded credentials."""
    head, sep, value = override.partition("=")
    if sep and value and is_secret_key(head.lstrip("+~")):
        return f"{head}={MASK}"
    return redact_text(override)


def redacted_container(cfg: DictConfig | ListConfig | dict[str, Any], resolve: bool = True) -> Any:
    """The config as plain data with secrets masked; unresolvable interpolations stay as written."""
    if not isinstance(cfg, DictConfig | ListConfig):
        return redact(cfg)
    try:
        data = OmegaConf.to_container(cfg, resolve=resolve, throw_on_missing=False)
    except Exception:  # an unset env var or a hydra: resolver outside a run
        data = OmegaConf.to_container(cfg, resolve=False)
    return redact(data)


def redact_yaml_file(path: Path) -> None:
    """Rewrite one of Hydra's saved files (.hydra/config.yaml, overrides.yaml, hydra.yaml) redacted."""
    if not path.is_file():
        return
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if path.name == "overrides.yaml" and isinstance(data, list):
        cleaned: Any = [redact_override(str(o)) for o in data]
    else:
        cleaned = _redact_overrides_inside(redact(data))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # parallel jobs may redact the same file
    tmp.write_text(yaml.safe_dump(cleaned, sort_keys=False, allow_unicode=True), encoding="utf-8")
    tmp.replace(path)


def _redact_overrides_inside(data: Any) -> Any:
    """hydra.yaml lists the overrides as strings under hydra.overrides.task/hydra, and joins them with
    commas into hydra.job.override_dirname."""
    if isinstance(data, dict):
        return {k: ([redact_override(str(o)) for o in v] if k in ("task", "hydra") and isinstance(v, list)
                    else ",".join(redact_override(o) for o in v.split(",")) if k == "override_dirname"
                    and isinstance(v, str) else _redact_overrides_inside(v)) for k, v in data.items()}
    if isinstance(data, list):
        return [_redact_overrides_inside(v) for v in data]
    return data


def redact_run_files(hydra_dir: Path) -> None:
    for name in ("config.yaml", "overrides.yaml", "hydra.yaml"):
        redact_yaml_file(hydra_dir / name)
