"""promptly.notify against a real HTTP receiver on 127.0.0.1: the Slack, Discord and generic payloads of
start, success and failure; retries on 500 and 429, none on 404; a receiver that never answers costs a
bounded time; GitHub's step summary and annotations; no secret in any payload, summary or log line; the
`python -m promptly.notify` entry; and task_wrapper reporting a failed verb when PROMPTLY_NOTIFY asks."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from promptly.notify import WEBHOOK_ENV, Event, Message, Retry, notify
from promptly.notify.channels import Webhook, post, webhooks_from_env
from promptly.notify.jobs import mark_notified
from promptly.utils.redact import SECRET_ENV_VARS
from promptly.utils.results import RunResult, write_result
from promptly.verbs.task_wrapper import task_wrapper

from .cloud.webhook_server import WebhookServer
from .conftest import REPO_ROOT

HF_TOKEN = "hf_plantedNotifyToken0123456789abcdef"
SLACK_SECRET = "T0NOTIFY/B0NOTIFY/plantedSlackPathSecret"
DISCORD_SECRET = "123456789/plantedDiscordPathSecret"
GENERIC_SECRET = "plantedGenericPathSecret42"
SECRETS = [HF_TOKEN, "plantedSlackPathSecret", "plantedDiscordPathSecret", GENERIC_SECRET]
FAST = Retry(attempts=3, timeout_s=1.0, backoff_s=0.05)

GITHUB_VARS = ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY", "GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID",
               "GITHUB_WORKFLOW", "GITHUB_REF", "GITHUB_SHA")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*WEBHOOK_ENV.values(), *GITHUB_VARS, "PROMPTLY_NOTIFY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)


def configure(monkeypatch: pytest.MonkeyPatch, server: WebhookServer) -> None:
    """All three webhooks on the local receiver, each with its secret in the path as the real ones have."""
    monkeypatch.setenv("SLACK_WEBHOOK_URL", server.url(f"/services/{SLACK_SECRET}"))
    monkeypatch.setenv("DISCORD_WEBHOOK_URL", server.url(f"/api/webhooks/{DISCORD_SECRET}"))
    monkeypatch.setenv("PROMPTLY_WEBHOOK_URL", server.url(f"/hooks/{GENERIC_SECRET}"))


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{secret} leaked into: {text[:300]}"


SUCCESS = Message(Event.success, "train experiment=smoke", text="training finished after 4 epoch(s)",
                  metrics={"val/loss": 1.234567, "val/ppl": 3.4, "bad": float("nan")}, run_dir="logs/train/runs/x")
FAILURE = Message(Event.failure, "train experiment=smoke", run_dir="logs/train/runs/y",
                  error=f"RuntimeError: push refused for token {HF_TOKEN}",
                  log_tail="\n".join(f"line {i}" for i in range(100)) + f"\nAuthorization: Bearer {HF_TOKEN}")


def test_the_webhook_urls_are_secrets_redaction_masks() -> None:
    assert set(WEBHOOK_ENV.values()) <= set(SECRET_ENV_VARS)
    assert "plantedSlack" not in repr(Webhook("slack", f"https://hooks.slack.com/services/{SLACK_SECRET}"))


def test_start_success_and_failure_payloads_for_slack_discord_and_generic(monkeypatch: pytest.MonkeyPatch,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    with WebhookServer() as server:
        configure(monkeypatch, server)
        with caplog.at_level(logging.DEBUG):
            for message in (Message(Event.start, "train experiment=smoke", text="training started"), SUCCESS,
                            FAILURE):
                deliveries = notify(message, FAST)
                assert [(d.channel, d.ok, d.attempts) for d in deliveries] == [
                    ("slack", True, 1), ("discord", True, 1), ("generic", True, 1)]
    assert len(server.received) == 9
    assert all(r.headers["content-type"] == "application/json" for r in server.received)
    slack = list(server.bodies("/services/"))
    discord = list(server.bodies("/api/webhooks/"))
    generic = list(server.bodies("/hooks/"))

    # Slack: fallback text + Block Kit; metrics as fields (finite ones only), the log tail in a code block.
    assert [s["blocks"][0]["text"]["text"] for s in slack] == [
        "start: train experiment=smoke", "success: train experiment=smoke", "failure: train experiment=smoke"]
    assert slack[0]["text"].startswith(":rocket:") and slack[2]["text"].startswith(":x:")
    fields = next(b["fields"] for b in slack[1]["blocks"] if "fields" in b)
    assert [f["text"] for f in fields] == ["*val/loss*\n1.235", "*val/ppl*\n3.4"]
    code = [b["text"]["text"] for b in slack[2]["blocks"] if b["type"] == "section" and "```" in b["text"]["text"]]
    assert len(code) == 1 and "line 99" in code[0] and "line 60" not in code[0]  # the last 30 lines only

    # Discord: one embed, coloured by event, metrics as inline fields.
    assert [d["embeds"][0]["color"] for d in discord] == [0x3B82F6, 0x22C55E, 0xEF4444]
    assert discord[1]["embeds"][0]["fields"] == [{"name": "val/loss", "value": "1.235", "inline": True},
                                                 {"name": "val/ppl", "value": "3.4", "inline": True}]
    assert "RuntimeError: push refused" in discord[2]["embeds"][0]["description"]
    assert all(len(d["content"]) <= 2000 and len(d["embeds"][0]["description"]) <= 4096 for d in discord)

    # Generic: every field as JSON.
    assert [g["event"] for g in generic] == ["start", "success", "failure"]
    assert generic[1]["metrics"] == {"val/loss": 1.234567, "val/ppl": 3.4}
    assert generic[1]["run_dir"] == "logs/train/runs/x" and generic[0]["source"] == "promptly"
    assert generic[2]["error"].startswith("RuntimeError: push refused for token ***")
    assert generic[2]["log_tail"].splitlines()[-1] == "Authorization: Bearer ***"

    assert_no_secret(*(r.raw for r in server.received), caplog.text)


def test_a_webhook_answering_500_is_retried_a_bounded_number_of_times(monkeypatch: pytest.MonkeyPatch,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    with WebhookServer(statuses=[500] * 10) as server:
        monkeypatch.setenv("SLACK_WEBHOOK_URL", server.url(f"/services/{SLACK_SECRET}"))
        with caplog.at_level(logging.WARNING):
            (delivery,) = notify(FAILURE, FAST)
    assert (delivery.ok, delivery.attempts, delivery.error) == (False, 3, "HTTP 500")
    assert len(server.received) == 3
    assert "not delivered after 3 attempt(s): HTTP 500" in caplog.text
    assert_no_secret(caplog.text)


def test_a_transient_500_then_success_is_delivered_once() -> None:
    with WebhookServer(statuses=[500, 503]) as server:
        delivery = post(Webhook("generic", server.url("/hooks/x")), {"a": 1}, FAST)
    assert (delivery.ok, delivery.attempts) == (True, 3) and len(server.received) == 3


def test_429_waits_for_retry_after_but_404_is_not_retried() -> None:
    waits: list[float] = []
    with WebhookServer(statuses=[429], headers={"Retry-After": "0.2"}) as server:
        assert post(Webhook("slack", server.url("/services/x")), {"text": "t"}, FAST, sleep=waits.append).ok
    assert waits == [0.2]
    with WebhookServer(statuses=[404, 404, 404]) as server:
        delivery = post(Webhook("slack", server.url("/services/x")), {"text": "t"}, FAST)
    assert (delivery.ok, delivery.attempts, len(server.received)) == (False, 1, 1)


def test_a_webhook_that_never_answers_costs_a_bounded_time(monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    retry = Retry(attempts=2, timeout_s=0.5, backoff_s=0.1)
    with WebhookServer(hang=True) as server:
        monkeypatch.setenv("DISCORD_WEBHOOK_URL", server.url(f"/api/webhooks/{DISCORD_SECRET}"))
        started = time.monotonic()
        with caplog.at_level(logging.WARNING):
            (delivery,) = notify(SUCCESS, retry)
        took = time.monotonic() - started
    assert not delivery.ok and delivery.attempts == 2 and "timeout" in (delivery.error or "").lower()
    assert 2 * 0.5 <= took < retry.worst_case_s() and took < 5
    assert len(server.received) == 2
    assert_no_secret(caplog.text, delivery.error or "")


def test_an_unreachable_webhook_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    with WebhookServer() as server:
        url = server.url(f"/hooks/{GENERIC_SECRET}")
    monkeypatch.setenv("PROMPTLY_WEBHOOK_URL", url)  # the server is gone: connection refused
    (delivery,) = notify(SUCCESS, Retry(attempts=2, timeout_s=0.5, backoff_s=0.01))
    assert not delivery.ok and "ConnectionRefusedError" in (delivery.error or "")
    assert_no_secret(delivery.error or "")


def test_a_value_that_is_not_a_url_is_skipped_without_printing_it(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert webhooks_from_env({"SLACK_WEBHOOK_URL": f"hooks.slack.com/{SLACK_SECRET}"}) == []
    assert "SLACK_WEBHOOK_URL is set but is not an http(s) URL" in caplog.text
    assert_no_secret(caplog.text)


def test_github_actions_step_summary_and_annotations(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    summary = tmp_path / "summary.md"
    for name, value in {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary),
                        "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "me/promptly",
                        "GITHUB_RUN_ID": "42"}.items():
        monkeypatch.setenv(name, value)
    assert notify(SUCCESS) == [] and notify(FAILURE) == []  # no webhook configured: only GitHub's outputs
    text = summary.read_text()
    assert "### ✅ success: train experiment=smoke" in text and "| val/loss | 1.235 |" in text
    assert "### ❌ failure: train experiment=smoke" in text and "line 99" in text
    assert "[open the run](https://github.com/me/promptly/actions/runs/42)" in text
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "::notice title=success%3A train experiment=smoke::training finished after 4 epoch(s)"
    assert out[1] == "::error title=failure%3A train experiment=smoke::RuntimeError: push refused for token ***"
    assert_no_secret(text, *out)


def test_the_cli_reports_a_result_and_exits_0_even_when_the_webhook_fails(tmp_path: Path) -> None:
    run_dir = tmp_path / "logs" / "ingest" / "gh-1"
    write_result(run_dir, RunResult(status="ok", task_name="ingest", metrics={"added": 3.0, "chunks": 12.0},
                                    output_dir=str(run_dir)))
    log_file = tmp_path / "job.log"
    log_file.write_text("".join(f"step {i}\n" for i in range(50)) + f"token={HF_TOKEN}\n")
    env = {k: v for k, v in os.environ.items() if k not in (*WEBHOOK_ENV.values(), *GITHUB_VARS)}
    with WebhookServer(statuses=[200, 500, 500, 500]) as server:
        env.update(PROMPTLY_WEBHOOK_URL=server.url(f"/hooks/{GENERIC_SECRET}"), HF_TOKEN=HF_TOKEN)
        ok = subprocess.run([sys.executable, "-m", "promptly.notify", "success", "--title", "ingest into Supabase",
                             "--result", str(run_dir / "result.json"), "--metric", "documents=40"],
                            env=env, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
        failed = subprocess.run([sys.executable, "-m", "promptly.notify", "failure", "--title", "ingest",
                                 "--log-file", str(log_file), "--error", "step failed", "--attempts", "3",
                                 "--backoff", "0.01"], env=env, capture_output=True, text=True, timeout=60,
                                cwd=REPO_ROOT)
    assert ok.returncode == 0 and failed.returncode == 0, ok.stderr + failed.stderr
    first = server.received[0].body
    assert first["event"] == "success" and first["title"] == "ingest into Supabase"
    assert first["metrics"] == {"added": 3.0, "chunks": 12.0, "documents": 40.0}
    assert first["run_dir"] == str(run_dir)
    assert [r.body["event"] for r in server.received[1:]] == ["failure"] * 3
    tail = server.received[1].body["log_tail"].splitlines()
    assert len(tail) == 30 and tail[-1] == "token=***"
    assert "NOT delivered: HTTP 500 (3 attempt(s))" in failed.stderr
    assert_no_secret(*(r.raw for r in server.received), ok.stdout, ok.stderr, failed.stdout, failed.stderr)


def test_the_cli_starts_without_torch() -> None:
    code = "import sys, promptly.notify.__main__; print('torch' in sys.modules, 'lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert out.stdout.strip() == "False False", out.stderr


def _failing_task(cfg: object) -> tuple[dict[str, float], dict[str, object]]:
    raise RuntimeError(f"store refused the key {HF_TOKEN}")


def test_task_wrapper_reports_a_failed_verb_when_promptly_notify_asks(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path / "run")}, "task_name": "ingest"})
    job = task_wrapper(_failing_task)
    with WebhookServer() as server:
        monkeypatch.setenv("PROMPTLY_WEBHOOK_URL", server.url(f"/hooks/{GENERIC_SECRET}"))
        with pytest.raises(RuntimeError):
            job(cfg)
        assert server.received == []  # not asked: nothing sent
        monkeypatch.setenv("PROMPTLY_NOTIFY", "failure")
        with pytest.raises(RuntimeError) as caught:
            job(cfg)
        assert caught.value.__dict__.get("_promptly_notified") is True
        (received,) = server.received
        body = received.body
        assert body["event"] == "failure" and body["title"].startswith("ingest ")
        assert body["error"] == "RuntimeError: store refused the key ***"
        assert body["run_dir"] == str(tmp_path / "run") and "_failing_task" in body["log_tail"]
        assert json.loads((tmp_path / "run" / "result.json").read_text())["status"] == "failed"

        def already_reported(cfg: object) -> tuple[dict[str, float], dict[str, object]]:
            err = RuntimeError("reported by the training callback")
            mark_notified(err)
            raise err

        with pytest.raises(RuntimeError):
            task_wrapper(already_reported)(cfg)
        assert len(server.received) == 1  # one failure, one message
    assert_no_secret(received.raw)
