"""The deletion guard: an ingest that would wipe (or mostly wipe) a source's documents or QA pairs changes nothing
and says which setting allows it; `ingest.dry_run` prints the plan and writes nothing; a wrong path is one line."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from promptly.errors import EmptyInputError, InputNotFoundError
from promptly.ingest.sync import MassDeletionError
from promptly.store.embedded import EmbeddedPostgresStore
from promptly.store.postgres import PostgresStore
from promptly.verbs.ingest import run

from .conftest import DIM, SAMPLE_DOCS, SAMPLE_QA, scratch_database
from .test_cli import run_cli
from .test_qa_generate import entry_config

FIRST, SECOND = "quillmq", "cronkite"


def product_qa(tmp_path: Path, product: str) -> Path:
    qa = tmp_path / f"qa-{product}.jsonl"
    qa.write_text("".join(line + "\n" for line in SAMPLE_QA.read_text().splitlines()
                          if line.strip() and json.loads(line)["document_id"].startswith(f"{product}/")))
    return qa


def ingest(tmp_path: Path, pg_url: str, source: Path, qa: Path | str = "", *overrides: str,
           console: Console | None = None):  # type: ignore[no-untyped-def]
    cfg = entry_config("ingest", tmp_path, ["store=postgres", f"store.url='{pg_url}'", f"ingest.source.path={source}",
                                            f"ingest.qa.path={qa}", "ingest.progress=false", *overrides])
    return run(cfg, console=console)


@pytest.fixture(scope="module")
def ingested_template(pg_server: EmbeddedPostgresStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database holding one product's documents and QA pairs, ingested under the default source name once
    for the module; each test gets a copy of it (Postgres template copy) with the documents in its own folder."""
    tmp = tmp_path_factory.mktemp("guard-template")
    with scratch_database(pg_server, prefix="guard") as (name, url):
        docs = tmp / "docs"
        shutil.copytree(SAMPLE_DOCS / FIRST, docs / FIRST)
        result = ingest(tmp, url, docs, product_qa(tmp, FIRST))
        assert result.ok and result.sync.added == 5 and result.qa is not None and result.qa.loaded > 10
        yield name


@pytest.fixture
def corpus_url(pg_server: EmbeddedPostgresStore, ingested_template: str) -> Iterator[str]:
    with scratch_database(pg_server, template=ingested_template) as (_, url):
        yield url


@pytest.fixture
def corpus_store(corpus_url: str) -> Iterator[PostgresStore]:
    with PostgresStore(corpus_url, embedding_dim=DIM) as store:
        yield store


@pytest.fixture
def corpus(tmp_path: Path, corpus_url: str) -> Path:
    """The documents of the store `corpus_url` holds (one product, as ingested), in this test's own folder."""
    docs = tmp_path / "docs"
    shutil.copytree(SAMPLE_DOCS / FIRST, docs / FIRST)
    return docs


def snapshot(store: PostgresStore) -> tuple[dict[str, str], int, int]:
    status = store.status()
    return store.document_hashes(), status.chunks, status.qa_pairs


def test_an_empty_folder_deletes_nothing_and_names_the_setting(
        corpus: Path, tmp_path: Path, corpus_url: str, corpus_store: PostgresStore) -> None:
    before = snapshot(corpus_store)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EmptyInputError, match=r"holds no documents.*ingest.allow_mass_delete=true"):
        ingest(tmp_path, corpus_url, empty)
    assert snapshot(corpus_store) == before
    allowed = ingest(tmp_path, corpus_url, empty, "", "ingest.allow_mass_delete=true")
    assert allowed.sync.deleted == 5 and corpus_store.document_hashes() == {}


@pytest.mark.parametrize("wrong", ["another corpus", "a mistyped subfolder"])
def test_a_wrong_folder_or_second_corpus_changes_nothing(
        wrong: str, corpus: Path, tmp_path: Path, corpus_url: str, corpus_store: PostgresStore) -> None:
    before = snapshot(corpus_store)
    if wrong == "another corpus":  # a second corpus under the same ingest.source.name
        source = tmp_path / "other"
        shutil.copytree(SAMPLE_DOCS / SECOND, source / SECOND)
    else:  # the path exists but holds one file of the corpus, under other ids
        source = corpus / FIRST
    with pytest.raises(MassDeletionError) as refused:
        ingest(tmp_path, corpus_url, source)
    message = str(refused.value)
    assert "would delete 5 of 5 stored documents" in message and "ingest.allow_mass_delete=true" in message
    assert "ingest.max_delete_fraction=0.5" in message and "ingest.dry_run=true" in message
    assert snapshot(corpus_store) == before  # not even the new documents were added


def test_the_allow_flag_replaces_the_corpus(corpus: Path, tmp_path: Path, corpus_url: str,
                                            corpus_store: PostgresStore) -> None:
    other = tmp_path / "other"
    shutil.copytree(SAMPLE_DOCS / SECOND, other / SECOND)
    result = ingest(tmp_path, corpus_url, other, "", "ingest.allow_mass_delete=true")
    assert (result.sync.added, result.sync.deleted) == (len(list((other / SECOND).iterdir())), 5)
    assert all(doc_id.startswith(f"{SECOND}/") for doc_id in corpus_store.document_hashes())


def test_deleting_up_to_the_fraction_is_an_ordinary_edit(corpus: Path, tmp_path: Path, corpus_url: str,
                                                         corpus_store: PostgresStore) -> None:
    files = sorted((corpus / FIRST).iterdir())
    files[0].unlink()
    files[1].unlink()  # 2 of 5 = 0.4 <= 0.5
    assert ingest(tmp_path, corpus_url, corpus).sync.deleted == 2
    files[2].unlink()  # 1 of 3 remaining, but with a stricter limit it is refused
    with pytest.raises(MassDeletionError, match="would delete 1 of 3"):
        ingest(tmp_path, corpus_url, corpus, "", "ingest.max_delete_fraction=0.2")
    assert len(corpus_store.document_hashes()) == 3


def test_a_qa_file_of_another_corpus_keeps_every_stored_pair(corpus: Path, tmp_path: Path, corpus_url: str,
                                                             corpus_store: PostgresStore) -> None:
    pairs_before = corpus_store.status().qa_pairs
    result = ingest(tmp_path, corpus_url, corpus, product_qa(tmp_path, SECOND))
    assert result.qa is not None and result.qa.removed == 0 and result.qa.kept_stale == pairs_before
    assert any("ingest.allow_mass_delete=true" in f.reason for f in result.qa.failed)
    assert not result.ok and corpus_store.status().qa_pairs == pairs_before


def test_dry_run_prints_the_plan_and_writes_nothing(corpus: Path, tmp_path: Path, corpus_url: str,
                                                    corpus_store: PostgresStore) -> None:
    files = sorted((corpus / FIRST).iterdir())
    files[0].write_text(files[0].read_text() + "\n\nA new paragraph.\n")
    files[1].unlink()
    (corpus / FIRST / "new-page.md").write_text("# New\n\nThe new page says the broker listens on port 7411.\n")
    before = snapshot(corpus_store)
    console = Console(record=True, width=200)
    result = ingest(tmp_path, corpus_url, corpus, "", "ingest.dry_run=true", console=console)
    plan = result.plan
    assert plan is not None
    assert ([d.id for d in plan.to_add], [d.id for d in plan.to_update], plan.to_delete) == (
        [f"{FIRST}/new-page.md"], [f"{FIRST}/{files[0].name}"], [f"{FIRST}/{files[1].name}"])
    out = console.export_text()
    assert f"{FIRST}/new-page.md" in out and "nothing was written" in out
    assert snapshot(corpus_store) == before

    # A refused plan says so; a store never migrated stays unmigrated.
    (corpus / FIRST).rename(tmp_path / "moved")
    (corpus / "README.md").write_text("# Another corpus\n")
    console = Console(record=True, width=300)
    ingest(tmp_path, corpus_url, corpus, "", "ingest.dry_run=true", console=console)
    assert "a real ingest would be refused" in console.export_text()
    assert snapshot(corpus_store) == before


def test_dry_run_on_a_new_store_migrates_nothing(tmp_path: Path, pg_url: str) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(SAMPLE_DOCS / FIRST, docs)
    result = ingest(tmp_path, pg_url, docs, "", "ingest.dry_run=true", console=Console(record=True))
    assert result.plan is not None and len(result.plan.to_add) == 5
    with PostgresStore(pg_url, embedding_dim=384) as store:
        assert store.status().applied_migrations == ()


def test_a_missing_path_is_refused_before_the_store_is_touched(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError, match=r"ingest.source.path=.*does not exist"):
        ingest(tmp_path, "postgresql://nobody@127.0.0.1:1/none", tmp_path / "no-such-folder")


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for path, expected in ((tmp_path / "missing", "does not exist"), (tmp_path / "empty", "holds no documents")):
        result = run_cli("ingest", f"ingest.source.path={path}", "ingest.qa.path=", cwd=tmp_path)
        assert result.returncode == 1
        assert expected in result.stderr and "Traceback" not in result.stderr + result.stdout
        assert not (tmp_path / ".promptly" / "pgdata").exists()  # refused before the store was started
