"""Loading sources: every format, stable ids and hashes, and bad files reported by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptly.ingest.documents import LoadFailure, SourceConfig, discover, load_file, load_source
from promptly.records import Document


def load_all(root: Path, **kw: object) -> tuple[dict[str, Document], dict[str, str]]:
    docs: dict[str, Document] = {}
    failures: dict[str, str] = {}
    for item in load_source(SourceConfig(path=str(root), **kw), fingerprint="fp"):  # type: ignore[arg-type]
        if isinstance(item, LoadFailure):
            failures[item.path] = item.reason
        else:
            docs[item.id] = item
    return docs, failures


def test_markdown_text_and_ids(tmp_path: Path) -> None:
    (tmp_path / "guide").mkdir()
    (tmp_path / "guide" / "install.md").write_text("# Installing Foo\r\n\r\nRun `pip install foo`.   \n")
    (tmp_path / "notes.txt").write_text("plain notes\n\n\n\n\nafter blanks")
    (tmp_path / "ignored.py").write_text("print('not a document')")
    (tmp_path / ".hidden.md").write_text("# hidden")
    docs, failures = load_all(tmp_path)
    assert failures == {}
    assert sorted(docs) == ["guide/install.md", "notes.txt"]
    md = docs["guide/install.md"]
    assert md.title == "Installing Foo"
    assert md.text == "# Installing Foo\n\nRun `pip install foo`."  # CRLF and trailing spaces normalised
    assert md.metadata["format"] == "markdown"
    assert docs["notes.txt"].text == "plain notes\n\n\nafter blanks"  # at most two blank lines kept
    assert docs["notes.txt"].title == "notes"


def test_hash_is_stable_and_tracks_content_and_settings(tmp_path: Path) -> None:
    path = tmp_path / "a.md"
    path.write_text("# A\n\nbody")
    first = next(load_file(path, tmp_path, SourceConfig(path=str(tmp_path)), "fp"))
    again = next(load_file(path, tmp_path, SourceConfig(path=str(tmp_path)), "fp"))
    other_settings = next(load_file(path, tmp_path, SourceConfig(path=str(tmp_path)), "fp2"))
    path.write_text("# A\n\nbody changed")
    edited = next(load_file(path, tmp_path, SourceConfig(path=str(tmp_path)), "fp"))
    assert isinstance(first, Document) and isinstance(again, Document)
    assert isinstance(other_settings, Document) and isinstance(edited, Document)
    assert first.content_hash == again.content_hash
    assert first.content_hash != other_settings.content_hash  # new chunker settings re-process it
    assert first.content_hash != edited.content_hash


def test_html_drops_scripts_and_keeps_headings(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text(
        "<html><head><title>Proxy Guide</title><style>body{color:red}</style></head><body>"
        "<script>var secret = 1;</script><h1>Proxy</h1><p>Listens on port 8080.</p>"
        "<h2>Limits</h2><ul><li>64 connections</li><li>30 s timeout</li></ul></body></html>"
    )
    docs, _ = load_all(tmp_path)
    page = docs["page.html"]
    assert page.title == "Proxy Guide"
    assert "var secret" not in page.text and "color:red" not in page.text
    assert "# Proxy" in page.text and "## Limits" in page.text
    assert "Listens on port 8080." in page.text and "64 connections" in page.text


def test_pdf_text_is_extracted(tmp_path: Path) -> None:
    fpdf = pytest.importorskip("fpdf")
    pdf = fpdf.FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.set_title("Release Notes")
    pdf.multi_cell(0, 8, "Version 2.4 adds the --dry-run flag.\nThe default port is now 9090.")
    pdf.output(str(tmp_path / "notes.pdf"))
    docs, failures = load_all(tmp_path)
    assert failures == {}
    assert docs["notes.pdf"].title == "Release Notes"
    assert "--dry-run" in docs["notes.pdf"].text and "9090" in docs["notes.pdf"].text


def test_jsonl_records_and_bad_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "faq-1", "text": "How to reset?", "title": "Reset", "metadata": {"lang": "en"}}),
        "{not json",
        json.dumps({"id": "faq-2", "text": "   "}),
        json.dumps({"text": "no id"}),
        json.dumps({"id": "faq-3", "text": "Second answer"}),
    ]
    (tmp_path / "faq.jsonl").write_text("\n".join(lines))
    docs, failures = load_all(tmp_path)
    assert sorted(docs) == ["faq-1", "faq-3"]
    assert docs["faq-1"].title == "Reset" and docs["faq-1"].metadata == {"format": "jsonl", "lang": "en"}
    assert docs["faq-3"].title == "faq-3"
    # A record whose id is known fails under that id (the ingest keeps its stored version); a line
    # without one is reported where it is.
    assert set(failures) == {"faq.jsonl:2", "faq-2", "faq.jsonl:4"}
    assert "invalid JSON" in failures["faq.jsonl:2"]
    assert failures["faq-2"].startswith("faq.jsonl:3: empty")


def test_id_prefix_namespaces_every_document(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# Readme\n\nuploaded text")
    (tmp_path / "faq.jsonl").write_text(json.dumps({"id": "faq-1", "text": "How to reset?"}) + "\n{broken")
    docs = {}
    failures = {}
    for item in load_source(SourceConfig(path=str(tmp_path), id_prefix="uploads/"), "fp"):
        if isinstance(item, LoadFailure):
            failures[item.path] = item
        else:
            docs[item.id] = item
    assert sorted(docs) == ["uploads/README.md", "uploads/faq-1"]
    assert list(failures) == ["uploads/faq.jsonl:2"] and failures["uploads/faq.jsonl:2"].hides_ids


def test_bad_files_are_reported_by_name_and_reason(tmp_path: Path) -> None:
    (tmp_path / "good.md").write_text("# Good\n\nfine")
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01\x02ELF\x00")
    (tmp_path / "empty.md").write_text("  \n\n ")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (tmp_path / "huge.md").write_text("x" * 2000)
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (tmp_path / "dangling.md").symlink_to(tmp_path / "missing-target.md")
    docs, failures = load_all(tmp_path, max_bytes=1000)
    assert sorted(docs) == ["good.md"]
    assert "binary" in failures["binary.txt"]
    assert "empty" in failures["empty.md"]
    assert "UTF-8" in failures["latin1.txt"]
    assert "oversized" in failures["huge.md"] and "max_bytes=1000" in failures["huge.md"]
    assert "PDF" in failures["broken.pdf"]
    dangling = next(load_file(tmp_path / "dangling.md", tmp_path, SourceConfig(path=str(tmp_path)), "fp"))
    assert isinstance(dangling, LoadFailure) and "unreadable" in dangling.reason


def test_glob_source_and_exclude(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.md").write_text("# X")
    (tmp_path / "a" / "y.txt").write_text("y")
    (tmp_path / "a" / "skip.md").write_text("# skip")
    root, files = discover(SourceConfig(path=f"{tmp_path}/**/*.md", exclude=["skip.md"]))
    assert root == tmp_path
    assert [p.name for p in files] == ["x.md"]


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"ingest\.source\.path"):
        discover(SourceConfig(path=str(tmp_path / "nope")))
