"""Document splits: train, validation or test, by a seeded hash of the document id (never per pair).

Fixed at ingest and stored with each document, so every stage (QA pairs, generated pairs, the
datamodule, conversations) sees one split per document and none is re-drawn later.
"""

from __future__ import annotations

from dataclasses import dataclass

from promptly.records import Split, sha256_hex


@dataclass
class SplitConfig:
    """How documents are assigned to splits: by a seeded hash of the document id, never per pair."""

    train: float = 0.8
    validation: float = 0.1
    test: float = 0.1
    seed: int = 42

    def __post_init__(self) -> None:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6 or min(self.train, self.validation, self.test) < 0:
            raise ValueError(f"ingest.qa.split ratios must be non-negative and sum to 1, got {total}")


def split_for_document(document_id: str, cfg: SplitConfig) -> Split:
    """A document's split: stable across runs and unaffected by other documents being added."""
    u = int(sha256_hex(f"{cfg.seed}:{document_id}")[:12], 16) / 16**12
    if u < cfg.train:
        return "train"
    if u < cfg.train + cfg.validation:
        return "validation"
    return "test"
