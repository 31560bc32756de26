"""Markdown tables as "column: value" lines, for the prompt a small model reads.

A pipe table gives each cell its meaning through the header row, which a 135M model loses a few rows
down: asked for quillmq's minimum memory, it read "| Memory | 2 GB | 8 GB |" and answered "3GB". Written
as "Resource: Memory; Minimum: 2 GB; Recommended for production: 8 GB" every value carries its column's
name. Only the prompt changes: chunks, citations and evidence keep the document's own text.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"^\s*(```|~~~)")
_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _is_row(line: str) -> bool:
    return line.lstrip().startswith("|") and line.count("|") >= 2


def linearize_tables(text: str) -> str:
    """Each pipe table (a header row, its separator, the body rows) as one "name: value; ..." line a
    row; text outside tables, code blocks, and pipe lines that are not a table, unchanged."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    in_code = False
    while i < len(lines):
        line = lines[i]
        if _FENCE.match(line):
            in_code = not in_code
        elif not in_code and _is_row(line) and i + 1 < len(lines) and _SEPARATOR.match(lines[i + 1]):
            header = _cells(line)
            i += 2
            while i < len(lines) and _is_row(lines[i]):
                cells = _cells(lines[i])
                names = header + [""] * max(0, len(cells) - len(header))  # a row longer than its header
                pairs = [f"{name}: {value}" if name else value
                         for name, value in zip(names[: len(cells)], cells, strict=True) if value]
                out.append("; ".join(pairs))
                i += 1
            continue
        out.append(line)
        i += 1
    return "\n".join(out)
