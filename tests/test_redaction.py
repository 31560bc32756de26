"""PII redaction: every planted item replaced and nothing else touched; the clean sample corpus untouched;
nothing it removes is ever printed or logged; metadata values redacted too; wired into ingest before
chunking and hashing; on in the `ingest=upload` config."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest
from hydra.utils import instantiate

from promptly.ingest.documents import SourceConfig, load_source, make_document
from promptly.ingest.redaction import NATIONAL_IDS, Redactor, _segments
from promptly.records import Document
from promptly.store.postgres import PostgresStore

from .conftest import DIM, SAMPLE_DOCS
from .test_qa_generate import entry_config

# (text, entity): personal data of every type the pattern recognizers cover, in ordinary prose.
PLANTED: list[tuple[str, str | None]] = [
    ("Hi team,\n\nplease reset the account of our customer (mail: ", None),
    ("jane.doe@fastmail.fm", "EMAIL_ADDRESS"),
    ("). She called from ", None),
    ("+44 20 7946 0958", "PHONE_NUMBER"),
    (" and later from her office line ", None),
    ("(650) 253-0000", "PHONE_NUMBER"),
    ("; her mobile, if you need to call: ", None),
    ("4155550132", "PHONE_NUMBER"),
    (".\nShe paid with card ", None),
    ("4111 1111 1111 1111", "CREDIT_CARD"),
    (" and refunds go to IBAN ", None),
    ("GB82 WEST 1234 5698 7654 32", "IBAN_CODE"),
    (". The login came from ", None),
    ("81.2.69.142", "IP_ADDRESS"),
    (" and then from ", None),
    ("2a00:1450:4009:81e::200e", "IP_ADDRESS"),
    (".\n\nIDs on file: SSN ", None),
    ("536-22-8726", "US_SSN"),
    (", NINO ", None),
    ("AB 12 34 56 C", "UK_NINO"),
    (", DNI ", None),
    ("12345678Z", "ES_NIF"),
    (", NIE ", None),
    ("X1234567L", "ES_NIE"),
    (", codice fiscale ", None),
    ("RSSMRA85T10A562S", "IT_FISCAL_CODE"),
    (", PESEL ", None),
    ("44051401359", "PL_PESEL"),
    (", henkilötunnus ", None),
    ("131052-308T", "FI_PERSONAL_IDENTITY_CODE"),
    (", personnummer ", None),
    ("811228-9874", "SE_PERSONNUMMER"),
    (", Aadhaar ", None),
    ("2345 6789 0124", "IN_AADHAAR"),
    (", NRIC ", None),
    ("S1234567D", "SG_NRIC_FIN"),
    (".\nThe proxy still listens on 127.0.0.1:8080 and the upgrade to v2.7.1 is planned for 2024-03-15.\n", None),
]

# What the stock recognizers flag in technical documentation; none of it is personal data.
TECHNICAL = """\
Released v1.2.3.4 on 2024-03-15T10:20:30Z (build 4.2.0.1); 2.0.0-rc.1 and 1.2.3+build.5 follow.
Listen on 0.0.0.0:8080, 127.0.0.1:9471, [::1]:443 or fe80::1; allow 10.0.0.0/8, 192.168.1.20, 203.0.113.5.
Timeouts: 30s, 5m, 24h, 86400 seconds, 604800, 31536000; epoch 1700000000 and 1700000000000 ms.
Limits: 2147483647, 4294967295, 9223372036854775807, 1099511627776 bytes, 987654321012 rows, 65535.
sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08, commit 3f2a9c1e,
uuid 123e4567-e89b-12d3-a456-426614174000, snowflake 4111111111111111 in /v2/items/4111111111111111.
git clone git@github.com:org/repo.git, mail admin@example.com or ops@mail.example.org,
telemetry port number 5432, file mode 0644, 15/03/2024 12:30:45, 1,000,000 rows, 100-200 ms.
"""


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    """Pattern recognizers only (no NER model), so the figures do not depend on what is installed."""
    r = Redactor(ner_model=None)
    assert r.person_detection.startswith("off")
    return r


def test_every_planted_item_is_replaced_and_the_rest_is_unchanged(redactor: Redactor) -> None:
    source = "".join(text for text, _ in PLANTED)
    expected = "".join(f"<{entity}>" if entity else text for text, entity in PLANTED)
    planted = Counter(entity for _, entity in PLANTED if entity)
    assert set(planted) >= {"EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS",
                            *NATIONAL_IDS}

    out = redactor.redact(source)

    assert out.text == expected  # byte for byte, placeholders where and only where PII was
    assert out.counts == dict(planted)
    recall = sum(out.counts.values()) / sum(planted.values())
    print(f"planted PII recall: {recall:.0%} of {sum(planted.values())} items, {len(planted)} types")


def test_long_texts_are_split_at_newlines_without_losing_a_byte() -> None:
    text = "".join(f"line {i} with some words\n" for i in range(200)) + "tail without newline " * 10
    pieces = list(_segments(text, 500))
    assert "".join(pieces) == text
    assert all(len(p) <= 500 for p in pieces) and all(p.endswith("\n") for p in pieces[:-1])


def test_technical_text_is_not_flagged(redactor: Redactor) -> None:
    out = redactor.redact(TECHNICAL)
    assert out.counts == {}
    assert out.text == TECHNICAL


def test_clean_sample_corpus_gets_no_placeholder(redactor: Redactor) -> None:
    documents = [d for d in load_source(SourceConfig(path=str(SAMPLE_DOCS)), "fp") if isinstance(d, Document)]
    assert len(documents) >= 40
    placeholders = Counter[str]()
    for doc in documents:
        redacted, counts = redactor.redact_document(doc, "fp")
        placeholders.update(counts)
        assert redacted == doc  # same text, title, metadata and hash: a re-ingest skips it
    assert sum(placeholders.values()) == 0, placeholders
    print(f"placeholders in the clean sample corpus ({len(documents)} documents): 0")


def test_person_names_need_an_installed_ner_model(tmp_path: Path) -> None:
    import spacy

    text = "Ask Jane Doe about the v1.2 rollout."
    missing = Redactor(ner_model="no_such_spacy_model_here")
    assert missing.person_detection.startswith("off (no spaCy model 'no_such_spacy_model_here'")
    assert missing.redact(text).text == text

    # A real spaCy pipeline loaded from a folder, as an installed model would be (rules, not weights).
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([{"label": "PERSON", "pattern": "Jane Doe"}])
    nlp.to_disk(tmp_path / "ner")
    with_ner = Redactor(ner_model=str(tmp_path / "ner"))
    assert with_ner.person_detection == f"on ({tmp_path / 'ner'})"
    out = with_ner.redact(text + " Mail jane@fastmail.fm.")
    assert out.text == "Ask <PERSON> about the v1.2 rollout. Mail <EMAIL_ADDRESS>."
    assert out.counts == {"PERSON": 1, "EMAIL_ADDRESS": 1}


def test_redacted_text_is_never_logged_or_printed(redactor: Redactor, caplog: pytest.LogCaptureFixture,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("presidio-analyzer", "presidio-anonymizer", "decision_process"):
        caplog.set_level(logging.DEBUG, logger=name)
    out = redactor.redact("".join(text for text, _ in PLANTED))
    assert out.counts
    captured = capsys.readouterr()
    seen = caplog.text + captured.out + captured.err
    for text, entity in PLANTED:
        if entity:
            assert text not in seen


def test_ingest_redacts_before_chunking_and_hashes_the_redacted_text(
        tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from promptly.verbs.ingest import run

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "clean.md").write_text("# Proxy\n\nThe proxy listens on 127.0.0.1:8080 and retries three times.\n")
    ticket = "# Ticket\n\nThe customer jane.doe@fastmail.fm called from +44 20 7946 0958 about a refund.\n"
    (docs / "ticket.md").write_text(ticket)

    def ingest(enabled: bool):  # type: ignore[no-untyped-def]
        cfg = entry_config("ingest", tmp_path, [
            "store=postgres", f"store.url='{pg_url}'", f"ingest.source.path={docs}", "ingest.qa.path=",
            "ingest.progress=false", f"ingest.redact.enabled={str(enabled).lower()}",
            "ingest.redact.ner_model=null"])
        return run(cfg)

    first = ingest(enabled=False)
    assert (first.sync.added, first.redaction) == (2, None)
    capsys.readouterr()

    second = ingest(enabled=True)
    assert (second.sync.unchanged, second.sync.updated) == (1, 1)  # the clean document keeps its hash
    assert second.redaction is not None
    assert dict(second.redaction.counts) == {"EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1}
    assert (second.redaction.documents, second.redaction.redacted_documents) == (2, 1)
    summary = " ".join(capsys.readouterr().err.split())  # rich wraps at the terminal width
    assert "PII redacted in 1 of 2 documents: EMAIL_ADDRESS 1, PHONE_NUMBER 1" in summary
    assert "person names: off" in summary
    assert "jane.doe" not in summary and "7946" not in summary

    with PostgresStore(pg_url, embedding_dim=DIM) as store:
        stored = "\n".join(c.content for c in store.iter_chunks(["ticket.md"]))
        metadata = store.conn.execute("select metadata from documents where id = 'ticket.md'").fetchone()
    assert "<EMAIL_ADDRESS>" in stored and "<PHONE_NUMBER>" in stored
    assert "jane.doe" not in stored and "7946" not in stored
    assert metadata is not None and metadata[0]["redactions"] == {"EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1}

    third = ingest(enabled=True)
    assert (third.sync.unchanged, third.sync.updated, third.sync.added) == (2, 0, 0)


def test_metadata_strings_are_redacted_recursively_and_clean_metadata_is_untouched(
        redactor: Redactor, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    email, phone = "jane.doe@fastmail.fm", "+44 20 7946 0958"
    clean_values = {"priority": 3, "escalated": False, "ratio": 0.5, "assignee": None, "build": "v1.2.3.4",
                    "owner": {"team": "support", "hosts": ["127.0.0.1:8080", "ops@example.com"]}}
    records = [
        {"id": "ticket-1", "title": "Refund", "text": "The customer asks for a refund of the last invoice.",
         "metadata": {"customer": {"contacts": ["billing", {"mail": email}]},
                      "note": f"call her mobile {phone} after 5pm", **clean_values}},
        {"id": "ticket-2", "title": "Proxy", "text": "The proxy listens on 127.0.0.1:8080.",
         "metadata": {"tags": ["proxy", {"area": "network"}], **clean_values}},
    ]
    (tmp_path / "tickets.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    caplog.set_level(logging.DEBUG)
    dirty, clean = [d for d in load_source(SourceConfig(path=str(tmp_path)), "fp") if isinstance(d, Document)]
    assert dirty.metadata["customer"]["contacts"][1]["mail"] == email  # the real loader kept it

    redacted, counts = redactor.redact_document(dirty, "fp")

    assert counts == {"EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1}
    assert redacted.metadata["customer"] == {"contacts": ["billing", {"mail": "<EMAIL_ADDRESS>"}]}
    assert redacted.metadata["note"] == "call her mobile <PHONE_NUMBER> after 5pm"
    assert redacted.metadata["redactions"] == {"EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1}
    assert redacted.metadata["format"] == "jsonl"
    for key, value in clean_values.items():  # non-PII values (and their types) exactly as loaded
        assert json.dumps(redacted.metadata[key]) == json.dumps(value)
    assert list(redacted.metadata) == [*dirty.metadata, "redactions"]
    assert (redacted.text, redacted.title) == (dirty.text, dirty.title)
    assert redacted.content_hash != dirty.content_hash
    assert redacted.content_hash == make_document(dirty.id, dirty.text, dirty.title, dirty.source, dirty.uri,
                                                  redacted.metadata, "fp").content_hash
    assert email not in json.dumps(redacted.metadata) and "7946" not in json.dumps(redacted.metadata)

    kept, clean_counts = redactor.redact_document(clean, "fp")
    assert kept is clean and clean_counts == {}  # same object, same content_hash: a re-ingest skips it

    captured = capsys.readouterr()
    seen = caplog.text + captured.out + captured.err
    assert email not in seen and "7946" not in seen


def test_the_upload_config_redacts_and_never_deletes_the_corpus(tmp_path: Path) -> None:
    upload = entry_config("ingest", tmp_path, ["ingest=upload"])
    corpus = entry_config("ingest", tmp_path, [])
    assert upload.ingest.redact.enabled is True and corpus.ingest.redact.enabled is False
    assert (upload.ingest.cleanup, corpus.ingest.cleanup) == ("incremental", "incremental")
    assert (upload.ingest.source.id_prefix, corpus.ingest.source.id_prefix) == ("uploads/", "")
    assert (upload.ingest.source.name, corpus.ingest.source.name) == ("uploads", "default")
    assert upload.ingest.source.path == f"{tmp_path}/uploads"
    assert upload.ingest.qa.path == ""
    # Everything else comes from ingest/default.yaml.
    assert upload.ingest.chunker == corpus.ingest.chunker
    assert upload.ingest.source.suffixes == corpus.ingest.source.suffixes
    redactor = instantiate(upload.ingest.redact)
    assert isinstance(redactor, Redactor) and redactor.enabled is True


def test_ingest_upload_redacts_uploads_and_the_two_sources_never_delete_each_other(tmp_path: Path, pg_url: str) -> None:
    from promptly.verbs.ingest import run

    docs, uploads = tmp_path / "docs", tmp_path / "home" / "uploads"
    docs.mkdir()
    uploads.mkdir(parents=True)
    (docs / "proxy.md").write_text("# Proxy\n\nThe proxy listens on 127.0.0.1:8080 and retries three times.\n")
    (uploads / "proxy.md").write_text("# My proxy notes\n\nMine listens on 9090.\n")  # same name, other source
    (uploads / "ticket.md").write_text("# Ticket\n\nThe customer jane.doe@fastmail.fm asks for a refund.\n")
    record = {"id": "crm-7", "text": "Customer record for the refund.",
              "metadata": {"customer": {"emails": ["j.smith@fastmail.fm"]}, "plan": "pro"}}
    (uploads / "crm.jsonl").write_text(json.dumps(record) + "\n")
    common = ["store=postgres", f"store.url='{pg_url}'", "ingest.progress=false", "ingest.redact.ner_model=null"]

    corpus_cfg = entry_config("ingest", tmp_path, [*common, f"ingest.source.path={docs}", "ingest.qa.path="])
    first = run(corpus_cfg)
    assert (first.sync.added, first.redaction) == (1, None)
    second = run(entry_config("ingest", tmp_path, [*common, "ingest=upload", f"paths.root_dir={tmp_path / 'home'}"]))

    assert (second.sync.added, second.sync.deleted) == (3, 0)  # incremental: the corpus document stays
    assert second.redaction is not None and dict(second.redaction.counts) == {"EMAIL_ADDRESS": 2}
    with PostgresStore(pg_url, embedding_dim=DIM) as store:
        sources = dict(store.conn.execute("select id, source from documents").fetchall())
        stored = "\n".join(c.content for c in store.iter_chunks(["uploads/ticket.md"]))
        rows = store.conn.execute("select metadata::text from documents union all "
                                  "select content || metadata::text from chunks").fetchall()
        crm = store.conn.execute("select metadata from documents where id = 'uploads/crm-7'").fetchone()
    assert sources == {"proxy.md": "default", "uploads/proxy.md": "uploads", "uploads/ticket.md": "uploads",
                       "uploads/crm-7": "uploads"}
    assert "<EMAIL_ADDRESS>" in stored
    assert crm is not None and crm[0]["customer"] == {"emails": ["<EMAIL_ADDRESS>"]} and crm[0]["plan"] == "pro"
    assert not any("fastmail" in row[0] for row in rows)
    again = run(corpus_cfg)  # the default corpus ingest again: the uploads are not its documents
    assert (again.sync.unchanged, again.sync.deleted) == (1, 0)
    with PostgresStore(pg_url, embedding_dim=DIM) as store:
        assert len(store.document_hashes("uploads")) == 3


def test_qa_pairs_from_the_file_are_redacted_like_the_documents(tmp_path: Path, pg_url: str) -> None:
    """With redaction on, a pair never restores what its chunk had redacted; the unredacted pair goes."""
    from promptly.verbs.ingest import run

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ticket.md").write_text("# Ticket\n\nThe customer jane.doe@fastmail.fm asks about a refund.\n")
    qa = tmp_path / "qa.jsonl"
    qa.write_text("\n".join(json.dumps(r) for r in [
        {"question": "Who asked about the refund?", "answer": "jane.doe@fastmail.fm did.", "document_id": "ticket.md"},
        {"question": "Which address wrote jane.doe@fastmail.fm?", "answer": "The customer.",
         "document_id": "ticket.md"},
        {"question": "What is the ticket about?", "answer": "A refund.", "document_id": "ticket.md"},
    ]) + "\n")

    def ingest(enabled: bool):  # type: ignore[no-untyped-def]
        return run(entry_config("ingest", tmp_path, [
            "store=postgres", f"store.url='{pg_url}'", f"ingest.source.path={docs}", f"ingest.qa.path={qa}",
            "ingest.progress=false", f"ingest.redact.enabled={str(enabled).lower()}", "ingest.redact.ner_model=null"]))

    plain = ingest(enabled=False)
    assert plain.qa is not None and plain.qa.redacted == Counter()
    redacted = ingest(enabled=True)
    assert redacted.qa is not None and dict(redacted.qa.redacted) == {"EMAIL_ADDRESS": 2}
    assert redacted.qa.removed == 1  # the pair whose question held the address now has another id
    with PostgresStore(pg_url, embedding_dim=DIM) as store:
        pairs = {p.question: p.answer for p in store.iter_qa_pairs()}
    assert pairs == {"Who asked about the refund?": "<EMAIL_ADDRESS> did.",
                     "Which address wrote <EMAIL_ADDRESS>?": "The customer.",
                     "What is the ticket about?": "A refund."}
