"""The data-balance check: the share of chunks and QA pairs per source, per owner (a metadata key) and
per document, read through the store's `data_balance` (one SQL function on every backend).

A dimension with a single group (one source, no owners) cannot be unbalanced and is never flagged:
the sample corpus (one source, eight products, forty documents) passes with the defaults.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from promptly.errors import PromptlyError
from promptly.store.base import BalanceRow, ChunkStore
from promptly.utils.markdown import markdown_table

log = logging.getLogger(__name__)
NONE_LABEL = "(none)"
DOCUMENT_ROWS = 10
"""Documents listed in the Markdown table (the largest first); the JSON keeps every one."""


class DataImbalanceError(PromptlyError, ValueError):
    """One group holds more of the training data than configured (bias.balance.on_imbalance=refuse)."""


class OnImbalance(StrEnum):
    warn = "warn"
    """Log a warning, put it in the report and go on."""
    refuse = "refuse"
    """Stop (DataImbalanceError) before any training step."""
    ignore = "ignore"
    """Only report the table."""


@dataclass
class BalanceSettings:
    """When the training data counts as unbalanced, and what happens then."""

    owner_key: str = "owner"
    """The document metadata key that names a document's owner (uploads carry `owner`)."""
    max_share: float = 0.5
    """Largest share of the chunks or QA pairs one source or owner may hold (when there are two or more)."""
    max_document_share: float = 0.25
    """Largest share of the chunks or QA pairs one document may hold."""
    on_imbalance: OnImbalance = OnImbalance.warn
    """warn, refuse or ignore."""


@dataclass(frozen=True)
class BalanceReport:
    rows: tuple[BalanceRow, ...]
    findings: tuple[str, ...]
    settings: BalanceSettings

    def shares(self) -> dict[str, list[dict[str, Any]]]:
        """Per dimension, each group's counts and shares, the largest share of chunks first."""
        out: dict[str, list[dict[str, Any]]] = {}
        for dim in ("source", "owner", "document"):
            rows = [r for r in self.rows if r.dimension == dim]
            chunks, pairs = sum(r.chunks for r in rows), sum(r.qa_pairs for r in rows)
            out[dim] = sorted(({"group": r.group or NONE_LABEL, "documents": r.documents, "chunks": r.chunks,
                                "qa_pairs": r.qa_pairs, "chunk_share": r.chunks / chunks if chunks else 0.0,
                                "qa_share": r.qa_pairs / pairs if pairs else 0.0} for r in rows),
                              key=lambda g: (-g["chunk_share"], -g["qa_share"], g["group"]))
        return out

    @property
    def max_share(self) -> float:
        """The largest share any source or owner holds, among dimensions with two or more groups."""
        shares = [max(g["chunk_share"], g["qa_share"]) for groups in self.shares().values() if len(groups) > 1
                  for g in groups]
        return max(shares, default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"settings": {k: str(v) if isinstance(v, StrEnum) else v for k, v in asdict(self.settings).items()},
                "findings": list(self.findings), "max_share": self.max_share, "shares": self.shares()}

    def markdown(self) -> str:
        """The table the report and the training log show."""
        rows: list[tuple[object, ...]] = []
        for dim, groups in self.shares().items():
            shown = groups[:DOCUMENT_ROWS] if dim == "document" else groups
            rows += [(dim, g["group"], g["documents"], g["chunks"], f"{g['chunk_share']:.1%}", g["qa_pairs"],
                      f"{g['qa_share']:.1%}") for g in shown]
            if len(groups) > len(shown):
                rows.append((dim, f"... {len(groups) - len(shown)} more"))
        table = markdown_table(["dimension", "group", "documents", "chunks", "share of chunks", "QA pairs",
                                "share of QA pairs"], rows, align="llrrrrr")
        verdict = ("\n".join(f"- {f}" for f in self.findings) if self.findings
                   else "- no group passes the thresholds")
        return table + "\n\n" + verdict + "\n"


def findings(rows: Sequence[BalanceRow], settings: BalanceSettings) -> list[str]:
    """Each group that holds more than its threshold of the chunks or the QA pairs."""
    out = []
    for dim in ("source", "owner", "document"):
        mine = [r for r in rows if r.dimension == dim]
        if len(mine) < 2:
            continue  # a single source (or no owner at all) is not an imbalance
        limit = settings.max_document_share if dim == "document" else settings.max_share
        for what in ("chunks", "qa_pairs"):
            total = sum(getattr(r, what) for r in mine)
            for r in mine:
                share = getattr(r, what) / total if total else 0.0
                if share > limit:
                    label = "owner key" if dim == "owner" else dim
                    out.append(f"{label} {r.group or NONE_LABEL!r} holds {share:.0%} of the {what.replace('_', ' ')} "
                               f"(more than {limit:.0%})")
    return out


def check_balance(store: ChunkStore, settings: BalanceSettings) -> BalanceReport:
    """Read the store's balance; warn or refuse (DataImbalanceError) as configured."""
    rows = tuple(store.data_balance(settings.owner_key))
    report = BalanceReport(rows=rows, findings=tuple(findings(rows, settings)), settings=settings)
    action = OnImbalance(settings.on_imbalance)
    if report.findings and action == OnImbalance.refuse:
        raise DataImbalanceError("the training data is unbalanced: " + "; ".join(report.findings) +
                                 " (bias.balance.on_imbalance=warn to go on anyway)")
    if report.findings and action == OnImbalance.warn:
        for finding in report.findings:
            log.warning("data balance: %s", finding)
    return report
