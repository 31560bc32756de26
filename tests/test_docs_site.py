"""The docs site and the README: `mkdocs build --strict` passes (and would fail on a broken link, a missing
anchor or a page left out of the nav), the generated configuration reference names the schemas' keys with
their docstrings, and the README stays a short guide whose verb table covers every verb of the CLI."""

from __future__ import annotations

import dataclasses
import html
import importlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from .conftest import compose

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = build(ROOT / "mkdocs.yml", out)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def page_text(site: Path, name: str) -> str:
    """A built page's text, one table row per line (cells joined by ' | ')."""
    raw = (site / name / "index.html").read_text()
    raw = re.sub(r"</t[dh]>\s*<t[dh][^>]*>", " | ", raw)
    raw = re.sub(r"</tr>", "\n", raw)
    return html.unescape(re.sub(r"<[^>]+>", "", raw))


def row(text: str, key: str) -> str:
    rows = [line for line in text.splitlines() if line.strip().startswith(key + " |")]
    assert len(rows) >= 1, f"no row for {key}"
    return rows[0]


def test_site_builds_strictly_with_every_page(site: Path) -> None:
    for page in ("ingest", "retrieval", "training", "evaluation", "metrics", "bias", "publishing", "serving",
                 "kaggle", "automation", "cloud", "configuration", "config-reference", "benchmarks", "development"):
        assert (site / page / "index.html").is_file(), page
    # benchmarks/README.md is included, not copied: its figures appear on the page
    first_heading = next(line for line in (ROOT / "benchmarks" / "README.md").read_text().splitlines()
                         if line.startswith("## "))
    title = re.sub(r"`", "", first_heading[3:]).strip()
    assert title in page_text(site, "benchmarks")


def test_config_reference_lists_schema_keys_with_their_docstrings(site: Path) -> None:
    from promptly.ingest.config import IngestConfig

    text = page_text(site, "config-reference")
    delete = row(text, "ingest.max_delete_fraction")
    assert "0.5" in delete and "Largest share of the stored documents" in delete
    k = row(text, "retrieval.k")
    assert "Chunks retrieved per question" in k and "| int | 3 |" in k
    mode = row(text, "retrieval.mode")
    assert all(m in mode for m in ("vector", "text", "hybrid"))
    assert "A folder (searched recursively)" in row(text, "ingest.source.path")
    # every field of the ingest schema is listed, nested ones as dotted keys
    for f in dataclasses.fields(IngestConfig):
        assert f"ingest.{f.name} |" in text, f.name
    assert "ingest.chunker.chunk_tokens |" in text and "ingest.redact.score_threshold |" in text


def test_strict_build_fails_on_a_broken_link_and_a_page_missing_from_the_nav(tmp_path: Path) -> None:
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    (tmp_path / "benchmarks").mkdir()
    shutil.copy(ROOT / "benchmarks" / "README.md", tmp_path / "benchmarks" / "README.md")
    (tmp_path / "docs" / "orphan.md").write_text("# Not in the nav\n")
    with (tmp_path / "docs" / "cloud.md").open("a") as f:
        f.write("\nSee [the store](ingest.md#no-such-section) and [gone](gone.md).\n")
    done = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "orphan.md" in out and "no-such-section" in out and "gone.md" in out


def cli() -> Any:
    """The module behind the `promptly` command (pyproject.toml's script entry point): its VERBS are the verbs."""
    script = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["promptly"]
    return importlib.import_module(script.split(":")[0])


def test_readme_is_a_short_guide_whose_verb_table_has_every_verb() -> None:
    text = README.read_text()
    assert len(text.encode()) <= 16 * 1024, f"README.md is {len(text.encode())} bytes: move reference to docs/"
    table = {m[1] for m in re.finditer(r"^\| `promptly (\w+)` \|", text, re.MULTILINE)}
    verbs = list(cli().VERBS)
    assert len(verbs) >= 12
    assert sorted(set(verbs) - table) == [], "README's verb table misses these verbs"
    for link, anchor in re.findall(r"\]\((docs/[^)#]+)(?:#([^)]+))?\)", text):
        assert (ROOT / link).exists(), f"README links to a missing {link}"
        if anchor:
            assert anchor in github_anchors((ROOT / link).read_text()), f"README links to a missing {link}#{anchor}"
    assert "verified-live-and-not" in github_anchors(text)


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a file's headings (lowercased, punctuation dropped, spaces as hyphens)."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", markdown, flags=re.DOTALL), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_ci_runs_the_readme_test_command() -> None:
    command = re.search(r"^(make \w+)\s+# creates \.venv, installs promptly, runs ruff", README.read_text(),
                        re.MULTILINE)
    assert command, "README's test command not found"
    steps = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert command[1] in steps


def readme_commands() -> list[list[str]]:
    """The `promptly ...` lines of the README's bash blocks, as argument lists (comments dropped; `~/` expanded
    after `=` as bash does; `A && B` is two commands)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.DOTALL):
        for line in block.splitlines():
            for part in line.split("  #")[0].split("&&"):
                args = shlex.split(part.replace("=~/", "=/home/you/"))
                if args[:1] == ["promptly"]:
                    commands.append(args[1:])
    return commands


def test_every_readme_command_is_a_verb_whose_config_composes() -> None:
    verbs = cli().VERBS
    commands = readme_commands()
    assert len(commands) >= 5
    for verb_name, *rest in commands:
        verb = verbs[verb_name]
        if verb.positional and rest and "=" not in rest[0]:
            rest = [f"{verb.positional}=x", *rest[1:]]
        if verb.actions and rest and rest[0] in verb.actions:
            rest = [f"action={rest[0]}", *rest[1:]]
        assert all("=" in a for a in rest), rest
        compose(verb_name, rest)


def load_hook() -> Any:
    """docs/hooks/config_reference.py, imported as mkdocs imports a hook (by path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_config_reference", ROOT / "docs" / "hooks" /
                                                  "config_reference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_defaults_quoted_in_the_docs_are_the_schemas() -> None:
    """A hand-written "`key` (default 0.5)" must say what the schema says, so the prose cannot drift."""
    defaults: dict[str, set[str]] = {}
    for section in load_hook().sections():
        for r in section.rows:
            defaults.setdefault(r.key, set()).add(r.default.strip("`"))
    quoted = re.compile(r"`(?P<key>[a-z_]+(?:\.[a-z_0-9]+)+)`[^`(\n]{0,30}\((?:default )?"
                        r"(?P<value>-?[0-9][0-9.,]*[0-9]|[0-9]|true|false)[ ),;:]")
    checked = 0
    for page in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for m in quoted.finditer(page.read_text()):
            if m["key"] not in defaults:
                continue
            value = m["value"].replace(",", "")
            schema = defaults[m["key"]]
            same = value in schema or any(re.fullmatch(r"-?[0-9.]+", d) and float(d) == float(value) for d in schema
                                          if value not in ("true", "false"))
            assert same, f"{page.name}: `{m['key']}` quoted as {value}, the schema says {schema}"
            checked += 1
    assert checked >= 5
