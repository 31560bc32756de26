"""The redaction rules themselves: secret-named keys, credentials inside strings, Hydra's saved files and
log records (the every-verb test checks that they are applied everywhere)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from promptly.utils.log_setup import RedactingFormatter
from promptly.utils.redact import MASK, redact, redact_run_files, redact_text


@pytest.mark.parametrize(("text", "secret"), [
    ("postgresql://admin:hunter2@db.example.com:5432/app", "hunter2"),
    ("host=db password='s3 cret' user=x", "s3 cret"),
    ("https://api.example.com/v1?api_key=abc123def&x=1", "abc123def"),
    ("token hf_abcdefghijklmnopqrstuvwxyz0123", "hf_abcdefghijklmnopqrstuvwxyz0123"),
    ("key sk-proj-abcdefghijklmnopqrstuvwx", "sk-proj-abcdefghijklmnopqrstuvwx"),
    ("kaggle KGAT_0123456789abcdef0123", "KGAT_0123456789abcdef0123"),
    ("https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX", "XXXXsecretXXXX"),
    ("https://discord.com/api/webhooks/123456/tokenPART", "tokenPART"),
])
def test_credentials_inside_text_are_masked(text: str, secret: str) -> None:
    masked = redact_text(text)
    assert secret not in masked and MASK in masked


def test_values_of_secret_environment_variables_are_masked_whatever_their_shape(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "plainlookingvalue42")
    assert redact_text("logged in with plainlookingvalue42 today") == f"logged in with {MASK} today"
    assert redact({"note": "plainlookingvalue42"}) == {"note": MASK}


def test_secret_named_keys_are_masked_and_harmless_ones_kept() -> None:
    data = {"store": {"key": "service-role-jwt", "url": "postgresql://u:pw@h/db"},
            "tokenizer": {"pad_token": "<pad>"}, "api_key_env": "OPENAI_API_KEY"}
    out = redact(data)
    assert out["store"]["key"] == MASK and "pw" not in out["store"]["url"]
    assert out["tokenizer"]["pad_token"] == "<pad>"


def test_hydra_saved_files_are_rewritten_without_secrets(tmp_path: Path) -> None:
    hydra_dir = tmp_path / ".hydra"
    hydra_dir.mkdir()
    overrides = ["store=supabase", "store.key=plain-service-key", "store.url=postgresql://u:pw123@h/db"]
    (hydra_dir / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (hydra_dir / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {
        "overrides": {"task": overrides, "hydra": []},
        "job": {"override_dirname": ",".join(overrides)}}}))
    (hydra_dir / "config.yaml").write_text(yaml.safe_dump({"store": {"key": "plain-service-key"}}))
    redact_run_files(hydra_dir)
    for name in ("overrides.yaml", "hydra.yaml", "config.yaml"):
        text = (hydra_dir / name).read_text()
        assert "plain-service-key" not in text and "pw123" not in text, name
        assert "store=supabase" in text or name == "config.yaml"
    job = yaml.safe_load((hydra_dir / "hydra.yaml").read_text())["hydra"]["job"]
    assert job["override_dirname"].startswith("store=supabase,store.key=***,")


def test_log_records_are_masked() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "cannot reach %s", ("postgresql://a:topsecret@h/d",),
                               None)
    assert "topsecret" not in RedactingFormatter("%(message)s").format(record)
