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


def row_with_header(content: str, start: int, end: int) -> str | None:
    """The table row at `content[start:end]` written with its column names ("Resource: Memory; Minimum:
    2 GB; ..."), as the prompt shows it; None when the span is not one body row of a pipe table (or is
    in a code block)."""
    row = content[start:end]
    if "\n" in row.strip() or not _is_row(row):
        return None
    lines = content[: content.rfind("\n", 0, start) + 1].split("\n")[:-1]  # the lines above the row
    if sum(bool(_FENCE.match(line)) for line in lines) % 2:
        return None  # inside a code block
    while lines and _is_row(lines[-1]) and not _SEPARATOR.match(lines[-1]):
        lines.pop()  # earlier body rows
    if len(lines) < 2 or not _SEPARATOR.match(lines[-1]) or not _is_row(lines[-2]):
        return None
    return linearize_tables(f"{lines[-2]}\n{lines[-1]}\n{row.strip()}")
