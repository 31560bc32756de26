"""`promptly publish publish.registry=hub` with the real huggingface_hub client against a local Hub server
(tests/cloud/hub_server.py), with HF_HUB_OFFLINE set as on an offline machine: the client is pointed at the
server by `publish.hub.endpoint`. What was uploaded is checked on the server's side."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch

from promptly.errors import ConfigError, RemoteServiceError
from promptly.store.postgres import PostgresStore
from promptly.verbs.publish import run as run_publish
from tests.cloud.hub_server import HubServer

from .conftest import DIM
from .test_publish_common import newest_evaluation_line, publish_config, publish_store  # noqa: F401
from .test_train_common import tiny_state  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE=1 as on a machine without internet (the client reads it once, at import)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, offline: None) -> Iterator[HubServer]:
    token = "hf_" + secrets.token_hex(16)
    monkeypatch.setenv("HF_TOKEN", token)
    with HubServer(token, user="me", orgs=("my-team",)) as server:
        yield server


def _hub(tmp: Path, store: str, server: HubServer, run_dir: Path, *extra: str):  # type: ignore[no-untyped-def]
    return publish_config(tmp, store, [f"run_dir={run_dir}", "publish.registry=hub",
                                       f"publish.hub.endpoint={server.url}", "publish.repo_id=docs-bot", *extra])


def test_push_to_the_hub_uploads_one_commit_tags_it_and_a_failed_upload_leaves_no_tag(
        tmp_path: Path, hub: HubServer, evaluated_run: Path, publish_store: str) -> None:  # noqa: F811
    _, objects = run_publish(_hub(tmp_path, publish_store, hub, evaluated_run))
    v1 = objects["version"]
    assert (v1.repo_id, v1.version) == ("me/docs-bot", "v1")  # a bare name goes to the token's user
    repo = hub.repos["me/docs-bot"]
    assert repo.private and repo.tags == {"v1": v1.revision} and len(repo.commits) == 1  # one commit
    files = hub.files("me/docs-bot", "v1")
    for name in ("README.md", "promptly.json", "config.json", "model.safetensors", "generation_config.json",
                 "tokenizer.json"):
        assert name in files, name
    token = hub.token
    assert not any(token.encode() in content for content in files.values())
    card = files["README.md"].decode()
    overall = newest_evaluation_line(evaluated_run)["metrics"]
    assert f"| bleu | {overall['bleu']:.4f} |" in card
    assert v1.config["location"] == f"{hub.url}/me/docs-bot/tree/v1"

    # What the server holds loads with plain transformers.
    from transformers import AutoModelForCausalLM

    download = tmp_path / "download"
    for name, content in files.items():
        (download / name).parent.mkdir(parents=True, exist_ok=True)
        (download / name).write_bytes(content)
    model = AutoModelForCausalLM.from_pretrained(download, dtype=torch.float32)
    assert model.config.vocab_size > 0

    hub.fail_next_commit = True  # the server fails after the client sent every file
    with pytest.raises(RemoteServiceError, match=r"failed while uploading the version \(one commit\) \(500\)"):
        run_publish(_hub(tmp_path, publish_store, hub, evaluated_run))
    assert repo.tags == {"v1": v1.revision} and len(repo.commits) == 1
    with PostgresStore(publish_store, embedding_dim=DIM) as store:
        assert [v.version for v in store.list_model_versions()] == ["v1"]

    _, objects = run_publish(_hub(tmp_path, publish_store, hub, evaluated_run, "publish.promote=true"))
    assert objects["version"].version == "v2" and objects["version"].is_active
    assert set(repo.tags) == {"v1", "v2"} and repo.tags["v2"] == repo.main
    assert any(r.startswith("POST /api/models/me/docs-bot/preupload/") for r in hub.requests)


def test_a_repository_of_someone_else_is_refused_before_anything_is_uploaded(
        tmp_path: Path, hub: HubServer, evaluated_run: Path, publish_store: str) -> None:  # noqa: F811
    with pytest.raises(RemoteServiceError, match=r"belongs to 'someone-else'.*writes as me, my-team"):
        run_publish(_hub(tmp_path, publish_store, hub, evaluated_run, "publish.repo_id=someone-else/model"))
    assert hub.repos == {} and not any("/commit/" in r or "create" in r for r in hub.requests)
    _, objects = run_publish(_hub(tmp_path, publish_store, hub, evaluated_run, "publish.repo_id=my-team/model"))
    assert objects["version"].repo_id == "my-team/model" and hub.repos["my-team/model"].tags.keys() == {"v1"}


def test_a_missing_or_refused_token_is_one_line_without_the_token(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline: None, evaluated_run: Path,
        publish_store: str) -> None:  # noqa: F811
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with HubServer("hf_" + secrets.token_hex(16)) as server:
        with pytest.raises(ConfigError, match="needs a write token in the HF_TOKEN environment variable"):
            run_publish(_hub(tmp_path, publish_store, server, evaluated_run))
        wrong = "hf_" + secrets.token_hex(16)
        monkeypatch.setenv("HF_TOKEN", wrong)
        with pytest.raises(RemoteServiceError, match=r"refused the token in HF_TOKEN .*\(401\)") as refused:
            run_publish(_hub(tmp_path, publish_store, server, evaluated_run))
        assert wrong not in str(refused.value) and server.repos == {}
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE is set, so the public Hub cannot be reached"):
        run_publish(publish_config(tmp_path, publish_store, [f"run_dir={evaluated_run}", "publish.registry=hub",
                                                             "publish.hub.endpoint=https://huggingface.co"]))
