"""Presidio pieces narrowed for technical documents, and an NLP engine that needs no downloaded model.

Imported only when redaction runs (it pulls in Presidio and spaCy). Each narrowing is one rule with
the false positive it removes named beside it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any

import spacy
import tldextract
from presidio_analyzer import RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts, NlpEngine
from presidio_analyzer.predefined_recognizers import EmailRecognizer, IpRecognizer, PhoneRecognizer

# tldextract's default fetches the public-suffix list over the network on first use: use the snapshot
# it ships instead, so redaction is offline and gives the same answer on every machine.
_DOMAINS = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
# "version 4.2.0.1", "released 1.2.3.4 and 1.2.3.5", "v1.2.3.4": dotted quads that are versions.
_VERSION_BEFORE = re.compile(r"\b(?:versions?|releases?|released|rev|build|upgraded?\s+to)\b[^\n]{0,40}$|\bv\s*$",
                             re.IGNORECASE)
_SSN_GROUPING = re.compile(r"\d{3}-\d{2}-\d{4}")
_LONGER_IDENTIFIER_AFTER = re.compile(r"\.\d|-\d|[A-Za-z_]")


class BlankNlpEngine(NlpEngine):
    """spaCy's rule-based English tokenizer (no model): enough for pattern recognizers and context words.

    Lemmas are the lower-cased tokens, so context words ("phone", "tel") still raise scores.
    """

    def __init__(self) -> None:
        self.nlp: Any = None

    def load(self) -> None:
        self.nlp = spacy.blank("en")

    def is_loaded(self) -> bool:
        return self.nlp is not None

    def process_text(self, text: str, language: str) -> NlpArtifacts:
        doc = self.nlp(text)
        return NlpArtifacts(entities=[], tokens=doc, tokens_indices=[t.idx for t in doc],
                            lemmas=[t.lower_ for t in doc], nlp_engine=self, language=language, scores=[])

    def process_batch(self, texts: Iterable[str], language: str, batch_size: int = 1, n_process: int = 1,
                      **kwargs: Any) -> Iterator[tuple[str, NlpArtifacts]]:
        for text in texts:
            yield text, self.process_text(str(text), language)

    def is_stopword(self, word: str, language: str) -> bool:
        """Nothing is: spaCy lists "call" as a stopword, which would silence a phone number's context."""
        return False

    def is_punct(self, word: str, language: str) -> bool:
        return bool(self.nlp.vocab[word].is_punct)

    def get_supported_entities(self) -> list[str]:
        return []

    def get_supported_languages(self) -> list[str]:
        return ["en"]


class OfflineEmailRecognizer(EmailRecognizer):
    """E-mail addresses with a real public suffix, except documentation domains and `git@host:` remotes."""

    def __init__(self, allowed_domains: Sequence[str] = ()) -> None:
        super().__init__()
        self.allowed_domains = tuple(allowed_domains)

    def validate_result(self, pattern_text: str) -> bool:
        return _DOMAINS(pattern_text).fqdn != ""

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None,
                regex_flags: int | None = None) -> list[RecognizerResult]:
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        return [r for r in results if self._personal(text, r.start, r.end)]

    def _personal(self, text: str, start: int, end: int) -> bool:
        domain = text[start:end].rsplit("@", 1)[-1].lower()
        if any(domain == d or domain.endswith("." + d) for d in self.allowed_domains):
            return False
        return not re.match(r":[\w~./-]", text[end:end + 2])  # git@github.com:org/repo.git is a remote


class GlobalIpRecognizer(IpRecognizer):
    """Routable IP addresses only: 127.0.0.1, 0.0.0.0, private and documentation ranges are config, not
    someone's address; dotted numbers inside versions (`v1.2.3.4`, `1.2.3.4.5`) are not addresses."""

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None,
                regex_flags: int | None = None) -> list[RecognizerResult]:
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        return [r for r in results if is_public_ip(text, r.start, r.end)]


def is_public_ip(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] is a routable address standing on its own, not part of a version."""
    try:
        address = ipaddress.ip_interface(text[start:end]).ip
    except ValueError:
        return False
    if not address.is_global:
        return False
    before, after = text[max(0, start - 60):start], text[end:end + 2]
    if before[-1:] in (".", "-", "_", "/") or (before[-1:].isalnum() and before[-1:] not in "vV"):
        return False
    if _LONGER_IDENTIFIER_AFTER.match(after):
        return False
    return not _VERSION_BEFORE.search(before)


class ScoredPhoneRecognizer(PhoneRecognizer):
    """Phone numbers scored by how they are written.

    libphonenumber accepts bare digit runs such as 2147483647 or an epoch timestamp as valid numbers
    somewhere, so a bare run scores below the threshold and needs a context word ("phone", "call");
    an international number (+44 ...) or one written with separators ((415) 555-0132) stands alone.
    """

    INTERNATIONAL = 0.75
    FORMATTED = 0.6
    BARE = 0.3

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts = None  # type: ignore[assignment]
                ) -> list[RecognizerResult]:
        results = super().analyze(text, entities, nlp_artifacts)
        for r in results:
            r.score = self._score(text[r.start:r.end])
        return results

    def _score(self, number: str) -> float:
        if _SSN_GROUPING.fullmatch(number):  # 536-22-8726 is written as a US SSN, not a phone number
            return self.BARE
        if number.startswith("+"):
            return self.INTERNATIONAL
        if re.search(r"\d[\s().-]+\d", number) or number.startswith("("):
            return self.FORMATTED
        return self.BARE



def is_part_of_identifier(text: str, start: int, end: int) -> bool:
    """Whether a match continues a longer token: `10<11 digits>`, a UUID's last group, a path segment."""
    before, after = text[max(0, start - 2):start], text[end:end + 2]
    if before[-1:].isalnum() or after[:1].isalnum():
        return True
    glued_before = len(before) == 2 and before[1] in "-_./" and before[0].isalnum()
    glued_after = len(after) == 2 and after[0] in "-_./" and after[1].isalnum()
    return glued_before or glued_after


def keep_result(text: str, result: RecognizerResult, need_context: Collection[str]) -> bool:
    """Drop numbers that are pieces of identifiers, and bare digit runs of `need_context` types that no
    context word vouches for (a Luhn- or Verhoeff-valid run is as likely a counter or an ID in an API)."""
    if result.entity_type in ("EMAIL_ADDRESS", "PERSON"):
        return True
    if is_part_of_identifier(text, result.start, result.end):
        return False
    if result.entity_type in need_context and text[result.start:result.end].isdigit():
        explanation = result.analysis_explanation
        return bool(explanation is not None and explanation.supportive_context_word)
    return True
