"""No secret reaches disk or the console, whichever verb runs: a password in a database URL, a Supabase
service key, `sk-`/`hf_`/`KGAT_` tokens and a webhook URL are planted in the environment and on the
command line, every verb in `VERBS` runs through the real CLI (each in its own process), and every file
under the home folder plus everything printed is scanned for them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from promptly.verbs.cli import VERBS

from .cli_batch import run_promptly_many
from .cloud.openai_server import OpenAIServer
from .conftest import REPO_ROOT

PASSWORD = "Pl4nted-DB-passw0rd"
SECRETS = {
    "SUPABASE_SERVICE_KEY": "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.planted-service-key-signature",
    "OPENAI_API_KEY": "sk-plantedOpenAIkey0123456789abcdef",
    "HF_TOKEN": "hf_plantedHubToken0123456789abcdefXYZ",
    "KAGGLE_KEY": "KGAT_plantedKaggleKey0123456789abcdef",
    "PROMPTLY_WEBHOOK_URL": "https://hooks.slack.com/services/T0PLANTED/B0PLANTED/plantedWebhookSecret42",
}
FRAGMENTS = [PASSWORD, "planted-service-key-signature", "plantedOpenAIkey", "plantedHubToken", "plantedKaggleKey",
             "plantedWebhookSecret42"]
"""What must never appear: each secret's distinctive part (masking may keep a scheme or prefix)."""


def url_with_password(conninfo: str) -> str:
    """The test database as a URL carrying a password (the embedded server trusts local sockets, so the
    planted password is accepted and never checked)."""
    params = conninfo_to_dict(conninfo)
    query = "&".join(f"{k}={params[k]}" for k in ("host", "port") if params.get(k))
    return f"postgresql://{params.get('user', 'postgres')}:{PASSWORD}@/{params['dbname']}?{query}"


@pytest.mark.slow
def test_no_verb_writes_or_prints_a_secret(tmp_path: Path, pg_url: str) -> None:
    home = tmp_path / "home"
    docs = home / "data" / "docs"
    docs.mkdir(parents=True)
    for name, text in {"proxy.md": "# Proxy\n\nThe proxy listens on port 8080 and retries twice on errors.",
                       "queue.md": "# Queue\n\nThe queue keeps messages for 7 days unless retention changes.",
                       "cache.md": "# Cache\n\nThe cache evicts entries after 15 minutes of idle time."}.items():
        (docs / name).write_text(text)
    (home / "data" / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        {"question": "Which port does the proxy use?", "answer": "Port 8080.", "document_id": "proxy.md"},
        {"question": "How long are messages kept?", "answer": "7 days.", "document_id": "queue.md"},
        {"question": "When are cache entries evicted?", "answer": "After 15 idle minutes.",
         "document_id": "cache.md"}]))
    env = {**os.environ, **SECRETS, "PROMPTLY_HOME": str(home), "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "HYDRA_FULL_ERROR": "0"}
    env.pop("WANDB_API_KEY", None)
    store = ["store=postgres", f"store.url='{url_with_password(pg_url)}'"]
    where = [f"paths.data_dir={home / 'data'}", *store]
    tiny = ["model=tiny", "model.tiny.num_hidden_layers=2", f"model.tiny.corpus_dir={REPO_ROOT / 'sample_data'}"]
    split = ["ingest.qa.split.train=0.34", "ingest.qa.split.validation=0.33", "ingest.qa.split.test=0.33"]
    train = ["experiment=smoke", *tiny, "trainer.max_epochs=1", "data.max_length=160", "data.retrieval.k=1",
             "module.samples=1", "trainer.enable_progress_bar=false", "data.validation_split=train"]
    with OpenAIServer(lambda body: '{"pairs": [{"question": "Which port?", "answer": "Port 8080."}]}',
                      api_key=SECRETS["OPENAI_API_KEY"]) as server:
        commands = {
            "ingest": ["ingest", *where, *split, "ingest.progress=false"],
            "db": ["db", "status", *store],
            "train": ["train", *where, *train],
            "eval": ["eval", *where, "run_dir=latest", "limit=2", "generation.max_new_tokens=4"],
            "runs": ["runs"],
            "qa": ["qa", "generate", *where, f"qa_generator.base_url={server.base_url}", "qa_generator.max_retries=0",
                   "qa.min_chunk_tokens=4", "qa.progress=false"],
            "ask": ["ask", "Which port does the proxy use?", *where, *tiny, "generation.max_new_tokens=4"],
            "bias": ["bias", *where, *tiny, "judge=openai_compatible", "judge.model=local-model",
                     f"judge.base_url={server.base_url}",
                     "judge.max_retries=0", "probes.axes=[gender]", "probes.templates_per_axis=1",
                     "generation.max_new_tokens=4", "calibration.enabled=false"],  # no BBQ download here
            "publish": ["publish", *store, "run_dir=latest", "publish.promote=true"],
            "launch": ["launch", "status", f"dir={home}"],
            "serve": ["serve", *where, *tiny, "serve.check=true", "serve.port=0"],  # starts, /readyz, exits
            "ui": ["ui", "ui.check=true", f"ui.port={18500 + os.getpid() % 1000}"],  # Streamlit up, then stopped
        }
        missing = set(VERBS) - set(commands)
        assert not missing, f"add the new verb(s) {missing} to this test"
        # each verb in a process of its own, forked from one that imported them all once (tests/cli_batch.py)
        results, driver = run_promptly_many([*commands.values(), ["qa", "export", *store]], home, env,
                                            tmp_path / "console")
        printed = [driver]
        for verb, result in zip([*commands, "qa export"], results, strict=True):
            assert result.returncode == 0, (verb, result.stderr[-3000:])
            printed.append(result.stdout + result.stderr)
    leaks = [(where_, fragment) for where_, text in [("console", "\n".join(printed)), *_files(home)]
             for fragment in FRAGMENTS if fragment in text]
    assert not leaks, leaks
    assert list(home.glob("logs/train/runs/*/result.json")) and list(home.glob("logs/eval/runs/*/result.json"))
    saved = next(home.glob("logs/train/runs/*/config.yaml")).read_text()
    assert "***" in saved  # the URL's password was there and was masked, not dropped by accident


def _files(root: Path) -> list[tuple[str, str]]:
    out = []
    for path in root.rglob("*"):
        if path.is_file() and "pgdata" not in path.parts:
            out.append((str(path.relative_to(root)), path.read_bytes().decode("utf-8", errors="replace")))
    return out
