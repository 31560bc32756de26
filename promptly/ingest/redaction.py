"""PII redaction before chunking: Presidio pattern recognizers tuned so technical text stays untouched.

Detected spans become typed placeholders (`<EMAIL_ADDRESS>`); only counts per type are reported, never
the text, so logs and summaries of an upload cannot leak what was removed. A document's title, text and
every string value of its metadata (stored with the document) are redacted. The stock recognizers flag
plenty of ordinary documentation (loopback addresses, 4-part versions, epoch timestamps, `git@host:`
remotes), so each one that would is narrowed here, and the sample corpus is held at zero placeholders.
Person names need a spaCy NER model; none is downloaded: without an importable one PERSON is off, and
the report says so.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from promptly.ingest.documents import LoadFailure, make_document
from promptly.records import Document

log = logging.getLogger(__name__)

PERSON = "PERSON"
CONTACT_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS")
NATIONAL_IDS = {  # entity -> Presidio recognizer class; each validates a checksum or a strict format
    "US_SSN": "UsSsnRecognizer", "UK_NINO": "UkNinoRecognizer", "ES_NIF": "EsNifRecognizer",
    "ES_NIE": "EsNieRecognizer", "IT_FISCAL_CODE": "ItFiscalCodeRecognizer", "PL_PESEL": "PlPeselRecognizer",
    "FI_PERSONAL_IDENTITY_CODE": "FiPersonalIdentityCodeRecognizer", "SE_PERSONNUMMER": "SePersonnummerRecognizer",
    "IN_AADHAAR": "InAadhaarRecognizer", "SG_NRIC_FIN": "SgFinRecognizer",
}
DEFAULT_ENTITIES = (*CONTACT_ENTITIES, *NATIONAL_IDS, PERSON)
BARE_DIGITS_NEED_CONTEXT = ("CREDIT_CARD", *NATIONAL_IDS)  # an unseparated run needs a word like "card"
# Reserved for documentation and tests (RFC 2606 / RFC 6761): never a real person's address.
RESERVED_DOMAINS = ("example.com", "example.org", "example.net", "example", "test", "invalid", "localhost")
PHONE_CONTEXT = ("phone", "phones", "telephone", "tel", "mobile", "cell", "cellphone", "call", "fax", "whatsapp",
                 "sms", "reach", "contact")
# Metadata keys promptly writes itself (loader format, placeholder counts): never user data, never redacted.
OWN_METADATA_KEYS = frozenset({"format", "redactions"})
MAX_SEGMENT_CHARS = 100_000  # spaCy refuses texts over 1M characters; segments end at a newline


@dataclass
class RedactionReport:
    """What redaction did in one ingest: placeholders per type, and whether names were looked for."""

    documents: int = 0
    redacted_documents: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    person_detection: str = ""

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class Redaction:
    """Redacted text and the number of placeholders of each type put into it."""

    text: str
    counts: dict[str, int]


class Redactor:
    """Replaces personal data with `<TYPE>` placeholders; on by default (uploads), off in the corpus config.

    Presidio is loaded on first use, so instantiating a disabled Redactor from config costs nothing.

    enabled: whether ingest applies it. entities: the types to find (DEFAULT_ENTITIES lists them).
    score_threshold: Presidio's minimum confidence; pattern scores are chosen around 0.5 (see
    redaction_nlp.py). ner_model: an installed spaCy package or pipeline folder for PERSON; never
    downloaded. phone_regions: libphonenumber regions tried for national formats. allowed_email_domains:
    documentation domains left alone. placeholder: what replaces a span, `{entity}` being its type.
    """

    def __init__(
        self,
        enabled: bool = True,
        entities: Sequence[str] = DEFAULT_ENTITIES,
        score_threshold: float = 0.5,
        ner_model: str | None = "en_core_web_sm",
        phone_regions: Sequence[str] = ("US", "GB", "DE", "FR", "IL", "IN", "CA", "BR"),
        allowed_email_domains: Sequence[str] = RESERVED_DOMAINS,
        placeholder: str = "<{entity}>",
    ) -> None:
        unknown = sorted(set(entities) - set(DEFAULT_ENTITIES))
        if unknown:
            raise ValueError(f"ingest.redact.entities: unknown {unknown}; choose from {list(DEFAULT_ENTITIES)}")
        if "{entity}" not in placeholder:
            raise ValueError(f"ingest.redact.placeholder must contain {{entity}}, got {placeholder!r}")
        self.enabled = enabled
        self.entities = tuple(entities)
        self.score_threshold = score_threshold
        self.ner_model = ner_model
        self.phone_regions = tuple(phone_regions)
        self.allowed_email_domains = tuple(d.lower() for d in allowed_email_domains)
        self.placeholder = placeholder

    # -- engines --------------------------------------------------------------------------------------
    @cached_property
    def person_detection(self) -> str:
        """`on (<model>)`, or `off (<why>)`: person names are only found with a spaCy NER model."""
        if PERSON not in self.entities:
            return "off (not in ingest.redact.entities)"
        reason = _ner_unavailable(self.ner_model)
        return f"off ({reason})" if reason else f"on ({self.ner_model})"

    @property
    def detects_persons(self) -> bool:
        return self.person_detection.startswith("on")

    @cached_property
    def _analyzer(self) -> Any:
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer

        silence_presidio_logs()
        recognizers = _pattern_recognizers(self)
        if self.detects_persons:
            from presidio_analyzer.nlp_engine import SpacyNlpEngine
            from presidio_analyzer.predefined_recognizers import SpacyRecognizer

            nlp_engine: Any = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": str(self.ner_model)}])
            recognizers.append(SpacyRecognizer(supported_entities=[PERSON]))
        else:
            from promptly.ingest.redaction_nlp import BlankNlpEngine

            nlp_engine = BlankNlpEngine()
            if PERSON in self.entities:
                log.info("PII redaction: person names are not detected: %s", self.person_detection)
        nlp_engine.load()
        registry = RecognizerRegistry(recognizers=recognizers, supported_languages=["en"])
        return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"],
                              log_decision_process=False, default_score_threshold=self.score_threshold,
                              context_aware_enhancer=LemmaContextAwareEnhancer(
                                  context_matching_mode="whole_word"))  # "tel" must not match "telemetry"

    @cached_property
    def _anonymizer(self) -> Any:
        from presidio_anonymizer import AnonymizerEngine

        return AnonymizerEngine()

    @property
    def active_entities(self) -> list[str]:
        return [e for e in self.entities if e != PERSON or self.detects_persons]

    # -- redaction ------------------------------------------------------------------------------------
    def redact(self, text: str) -> Redaction:
        """The text with every detected item replaced by its placeholder; everything else byte for byte."""
        if not text:
            return Redaction(text, {})
        counts: Counter[str] = Counter()
        parts = []
        for segment in _segments(text, MAX_SEGMENT_CHARS):
            redacted, found = self._redact_segment(segment)
            parts.append(redacted)
            counts.update(found)
        return Redaction("".join(parts), dict(counts))

    def _redact_segment(self, text: str) -> tuple[str, Counter[str]]:
        from presidio_anonymizer.entities import OperatorConfig

        from promptly.ingest.redaction_nlp import keep_result

        results = self._analyzer.analyze(text=text, language="en", entities=self.active_entities,
                                         score_threshold=self.score_threshold, return_decision_process=True)
        results = [r for r in results if keep_result(text, r, BARE_DIGITS_NEED_CONTEXT)]
        if not results:
            return text, Counter()
        operators = {e: OperatorConfig("replace", {"new_value": self.placeholder.format(entity=e)})
                     for e in {r.entity_type for r in results}}
        out = self._anonymizer.anonymize(text=text, analyzer_results=results, operators=operators)
        return out.text, Counter(item.entity_type for item in out.items)

    def redact_document(self, document: Document, fingerprint: str) -> tuple[Document, dict[str, int]]:
        """The document with redacted title, text and metadata values, re-hashed from what will be stored.

        Every string in the metadata is redacted, however deeply nested in objects and lists; keys,
        non-string values and promptly's own keys (OWN_METADATA_KEYS) are kept. An unchanged clean
        document is returned as is, hash included (so a re-ingest skips it); one with personal data
        records its placeholder counts in `metadata.redactions`.
        """
        body, title = self.redact(document.text), self.redact(document.title)
        counts = Counter(body.counts) + Counter(title.counts)
        user_metadata = {k: v for k, v in document.metadata.items() if k not in OWN_METADATA_KEYS}
        redacted_metadata = self._redact_value(user_metadata, counts)
        if not counts:
            return document, {}
        metadata = {**document.metadata, **redacted_metadata, "redactions": dict(sorted(counts.items()))}
        redacted = make_document(document.id, body.text, title.text, document.source, document.uri, metadata,
                                 fingerprint)
        return redacted, dict(counts)

    def _redact_value(self, value: Any, counts: Counter[str]) -> Any:
        """A JSON-like value with each string redacted (keys kept), its placeholders added to `counts`."""
        if isinstance(value, str):
            out = self.redact(value)
            counts.update(out.counts)
            return out.text
        if isinstance(value, dict):
            return {key: self._redact_value(item, counts) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self._redact_value(item, counts) for item in value)
        return value

    def redact_documents(self, items: Iterable[Document | LoadFailure], fingerprint: str,
                         report: RedactionReport) -> Iterator[Document | LoadFailure]:
        """Redact a stream of loaded documents (failures pass through), counting into `report`."""
        report.person_detection = self.person_detection
        for item in items:
            if isinstance(item, LoadFailure):
                yield item
                continue
            document, counts = self.redact_document(item, fingerprint)
            report.documents += 1
            if counts:
                report.redacted_documents += 1
                report.counts.update(counts)
            yield document


def _only_warnings(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


def silence_presidio_logs() -> None:
    """Presidio's debug and info lines quote the text around each match: drop them at the source, so
    no log level or handler configuration (hydra.verbose, pytest's caplog) can bring them back."""
    for name in ("presidio-analyzer", "presidio-anonymizer", "decision_process"):
        logger = logging.getLogger(name)
        if _only_warnings not in logger.filters:
            logger.addFilter(_only_warnings)


def _ner_unavailable(model: str | None) -> str:
    """Why the NER model cannot be used, or "" when it can (never downloads one)."""
    if not model:
        return "no spaCy NER model configured (ingest.redact.ner_model)"
    try:
        import spacy
    except ImportError:
        return "spaCy is not installed"
    if spacy.util.is_package(model) or Path(model).is_dir():
        return ""
    return f"no spaCy model {model!r} is installed; pip install it to redact person names"


def _segments(text: str, limit: int) -> Iterator[str]:
    """Pieces of at most `limit` characters that end at a newline where one exists; they join to text."""
    start = 0
    while len(text) - start > limit:
        cut = text.rfind("\n", start, start + limit)
        end = cut + 1 if cut > start else start + limit
        yield text[start:end]
        start = end
    yield text[start:]


def _pattern_recognizers(cfg: Redactor) -> list[Any]:
    from presidio_analyzer import predefined_recognizers as pr

    from promptly.ingest.redaction_nlp import GlobalIpRecognizer, OfflineEmailRecognizer, ScoredPhoneRecognizer

    wanted = set(cfg.entities)
    out: list[Any] = []
    if "EMAIL_ADDRESS" in wanted:
        out.append(OfflineEmailRecognizer(allowed_domains=cfg.allowed_email_domains))
    if "PHONE_NUMBER" in wanted:
        out.append(ScoredPhoneRecognizer(context=list(PHONE_CONTEXT), supported_regions=cfg.phone_regions))
    if "CREDIT_CARD" in wanted:
        out.append(pr.CreditCardRecognizer())
    if "IBAN_CODE" in wanted:
        out.append(pr.IbanRecognizer())
    if "IP_ADDRESS" in wanted:
        out.append(GlobalIpRecognizer())
    for entity, class_name in NATIONAL_IDS.items():
        if entity in wanted:
            out.append(getattr(pr, class_name)(supported_language="en"))
    return out
