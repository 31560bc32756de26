""".github/workflows: every file validates against the GitHub workflow schema (check-jsonschema's vendored
copy, offline), every `promptly` command a workflow runs is a verb whose entry config composes (and
resolves) with the overrides the workflow passes, every `python -m promptly.notify` call parses, and the
policy holds: read-only permissions, a concurrency group, a timeout on every job, secrets only from
GitHub secrets, notifications on start/success/failure. None of this runs a workflow on GitHub."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from promptly.notify import WEBHOOK_ENV
from promptly.notify.__main__ import parser as notify_parser
from promptly.utils.redact import redact_text
from promptly.verbs.cli import VERBS

from .conftest import REPO_ROOT, compose, resolved

WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml"))
EXPECTED = {"ci.yml", "train.yml", "ingest.yml", "bias-report.yml"}
GITHUB = {"github.sha": "0" * 40, "github.server_url": "https://github.com", "github.repository": "me/promptly",
          "github.ref_name": "main", "github.run_id": "42", "github.run_attempt": "1"}
SHELL_VALUES = {"job": "logs/train/multiruns/gh-42-1/0/", "MODEL_DIR": "served-model", "VERSION": "me/bot v1",
                "STORE": "postgres"}
"""Values of shell variables that steps set at run time (the workflow's own `env:` supplies the rest)."""


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def triggers(wf: dict[str, Any]) -> dict[str, Any]:
    return wf.get("on", wf.get(True)) or {}  # YAML 1.1 reads a bare `on` key as True


def expression(expr: str) -> str:
    """A representative value of a `${{ ... }}` expression: its `|| 'default'`, a github.* value, else empty
    (an unset input or secret)."""
    default = re.search(r"\|\|\s*'([^']*)'\s*$", expr)
    if default:
        return default[1]
    return GITHUB.get(expr.strip(), "")


def substitute(text: str, variables: dict[str, str]) -> str:
    text = re.sub(r"\$\{\{(.*?)\}\}", lambda m: expression(m[1]), text)
    text = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: variables.get(m[1]) or m[2], text)
    return re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m[1], m[0]), text)


@dataclass(frozen=True)
class Command:
    workflow: str
    step: str
    args: list[str]


def commands(path: Path, overrides: dict[str, str] | None = None) -> list[Command]:
    """Every `promptly ...` and `python -m promptly.notify ...` line of the workflow's run scripts, with
    ${{ }} expressions and shell variables replaced by representative values."""
    wf = load(path)
    variables = {k: expression(v[3:-2]) if str(v).startswith("${{") else str(v) for k, v in wf.get("env", {}).items()}
    variables = {k: substitute(v, variables) for k, v in variables.items()}
    variables.update(SHELL_VALUES)
    variables.update(overrides or {})
    found = []
    for job in wf["jobs"].values():
        for step in job["steps"]:
            script = step.get("run", "").replace("\\\n", " ")
            for line in script.splitlines():
                line = re.split(r"\s(?:2>&1|\||&&)\s", line.strip())[0]
                if not re.match(r"(promptly |(\.venv/bin/)?python -m promptly\.notify )", line):
                    continue
                args = shlex.split(substitute(line, variables))
                found.append(Command(path.name, step.get("name", "?"), args))
    return found


def test_the_four_workflows_exist() -> None:
    assert {p.name for p in WORKFLOWS} == EXPECTED


def test_every_workflow_validates_against_the_github_workflow_schema() -> None:
    # The schema ships inside check-jsonschema (vendor.github-workflows): no network is used.
    out = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                          *map(str, WORKFLOWS)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok -- validation done" in out.stdout


def test_a_broken_workflow_fails_the_schema(tmp_path: Path) -> None:
    """The schema check is not vacuous: a job without runs-on and with a misspelt key is refused."""
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    timeout-minute: 5\n    steps:\n      - run: echo\n")
    out = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                          str(bad)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stdout


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_privilege_concurrency_and_timeouts(path: Path) -> None:
    wf = load(path)
    assert wf["permissions"] == {"contents": "read"}, "read-only token for every workflow"
    assert "write" not in yaml.safe_dump(wf.get("permissions")) + "".join(
        yaml.safe_dump(j.get("permissions", {})) for j in wf["jobs"].values())
    assert wf["concurrency"]["group"]
    for name, job in wf["jobs"].items():
        assert 0 < int(job["timeout-minutes"]) <= 360, f"{path.name}:{name} needs a timeout under GitHub's 6 h"
    assert wf["defaults"]["run"]["shell"] == "bash"  # -eo pipefail: `cmd | tee log` fails when cmd does


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_secrets_come_only_from_github_secrets(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert redact_text(text) == text, "something shaped like a credential is written in the workflow"
    wf = load(path)
    secret_names = {"HF_TOKEN", "KAGGLE_KEY", "SUPABASE_SERVICE_KEY", "PROMPTLY_DATABASE_URL", *WEBHOOK_ENV.values()}
    for name, value in wf.get("env", {}).items():
        if name in secret_names:
            assert value == f"${{{{ secrets.{name} }}}}", f"{path.name}: {name} must come from secrets.{name}"
    for name in WEBHOOK_ENV.values():  # every workflow can notify
        assert name in wf["env"], f"{path.name} does not pass {name}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_workflow_notifies(path: Path) -> None:
    events = [(c.args[3], c.step) for c in commands(path) if c.args[2] == "promptly.notify"]
    kinds = {e for e, _ in events}
    assert "failure" in kinds
    if path.name != "ci.yml":  # CI reports failures only; the others report every run
        assert {"start", "success"} <= kinds
    wf = load(path)
    for job in wf["jobs"].values():
        for step in job["steps"]:
            if "promptly.notify failure" in step.get("run", ""):
                assert "failure()" in step["if"]
            if "promptly.notify success" in step.get("run", ""):
                assert step["if"] == "success()"


def test_the_training_concurrency_group_is_the_experiment_and_never_cancels() -> None:
    wf = load(REPO_ROOT / ".github" / "workflows" / "train.yml")
    assert "inputs.experiment" in wf["concurrency"]["group"] and wf["concurrency"]["cancel-in-progress"] is False
    assert wf["env"]["EXPERIMENT"].replace(" ", "") in wf["concurrency"]["group"].replace(" ", "").replace(
        "train-", "")
    dispatch = triggers(wf)["workflow_dispatch"]["inputs"]
    assert {"experiment", "overrides"} <= set(dispatch)
    assert set(triggers(wf)["push"]["paths"]) == {"configs/**", "experiments/**", "promptly/**"}
    assert "cron" in str(triggers(load(REPO_ROOT / ".github" / "workflows" / "bias-report.yml"))["schedule"])
    assert "cron" in str(triggers(load(REPO_ROOT / ".github" / "workflows" / "ingest.yml"))["schedule"])


def _promptly_commands() -> list[tuple[Command, str]]:
    cases = []
    for path in WORKFLOWS:
        variants: list[dict[str, str]] = [{}]
        if path.name == "train.yml":  # the push default, and a hand-run experiment with extra overrides
            variants.append({"EXPERIMENT": "smoke", "OVERRIDES": "optim.lr=0.0001 data.retrieval.k=3"})
        if path.name == "ingest.yml":
            variants.append({"STORE": "supabase"})
        for variant in variants:
            for c in commands(path, variant):
                if c.args[0] == "promptly":
                    cases.append((c, ",".join(f"{k}={v}" for k, v in variant.items()) or "default"))
    return cases


PROMPTLY = _promptly_commands()


def test_the_workflows_run_the_commands_the_issue_asks_for() -> None:
    run = {(c.workflow, c.args[1]) for c, _ in PROMPTLY}
    assert {("ci.yml", "ingest"), ("ci.yml", "train"), ("train.yml", "train"), ("train.yml", "eval"),
            ("train.yml", "publish"), ("ingest.yml", "db"), ("ingest.yml", "ingest"),
            ("bias-report.yml", "bias")} <= run
    train = next(c for c, _ in PROMPTLY if c.workflow == "train.yml" and c.args[1] == "train")
    assert {"-m", "hydra/launcher=kaggle"} <= set(train.args)
    publish = next(c for c, _ in PROMPTLY if c.workflow == "train.yml" and c.args[1] == "publish")
    assert {"publish.only_if_better=true", "publish.promote=true", "publish.metric=eval/rougeL"} <= set(publish.args)


@pytest.mark.parametrize(("command", "variant"), PROMPTLY,
                         ids=[f"{c.workflow}:{c.step}:{v}" for c, v in PROMPTLY])
def test_every_promptly_command_is_a_verb_that_composes_with_its_overrides(
        command: Command, variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"PROMPTLY_DATABASE_URL": "postgresql://ci@db.example.com:5432/postgres",
                        "SUPABASE_URL": "https://project.supabase.co", "SUPABASE_SERVICE_KEY": "service-key",
                        "KAGGLE_USERNAME": "me"}.items():
        monkeypatch.setenv(name, value)
    verb_name, rest = command.args[1], command.args[2:]
    assert verb_name in VERBS, f"{command.workflow}: `promptly {verb_name}` is not a verb"
    verb = VERBS[verb_name]
    if verb.actions and rest and rest[0] in verb.actions:
        rest = [f"action={rest[0]}", *rest[1:]]
    overrides = [a for a in rest if a != "-m"]
    assert all("=" in a for a in overrides), f"not an override in {command.args}"
    assert (REPO_ROOT / "configs" / f"{verb_name}.yaml").is_file()
    cfg = compose(verb_name, overrides)
    plain = resolved(cfg)
    for override in overrides:  # every value the workflow passes arrived where it was meant to
        key, value = override.split("=", 1)
        if "/" in key or key.startswith("hydra.") or key in ("experiment", "store", "callbacks"):
            continue
        node: Any = plain
        for part in key.split("."):
            node = node[part]
        assert str(node).lower() == value.lower(), f"{override} -> {node}"


def test_every_notify_call_parses() -> None:
    calls = [c for p in WORKFLOWS for c in commands(p) if c.args[2:3] == ["promptly.notify"]]
    assert len(calls) >= 10
    for c in calls:
        args = notify_parser().parse_args(c.args[3:])
        assert args.title
