"""One Markdown-table writer for every report (evaluation, bias, model card, notifications).

Tables were written by hand in six places, each with its own escaping (or none): a `|` or a newline in
a cell (a question, a group name, a setting) then broke the row. Here every cell is escaped the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

_RULES = {"l": "---", "r": "---:", "c": ":---:"}


def cell(value: object) -> str:
    """A value as one table cell: whitespace runs (newlines included) become one space, `|` is escaped."""
    return " ".join(str(value).split()).replace("|", "\\|")


def markdown_table(header: Sequence[object], rows: Iterable[Sequence[object]], align: str = "") -> str:
    """A GitHub-flavoured Markdown table (no trailing newline).

    `align` has one letter per column, `l`eft, `r`ight or `c`entre; missing letters mean left. A row
    shorter than the header is padded with empty cells; a longer one is refused, as it would shift columns.
    """
    width = len(header)
    if len(align) > width or set(align) - set(_RULES):
        raise ValueError(f"align must be up to {width} of the letters l, r, c: {align!r}")
    lines = [_row([cell(h) for h in header]), _row([_RULES[a] for a in align.ljust(width, "l")])]
    for row in rows:
        if len(row) > width:
            raise ValueError(f"a row of {len(row)} cells under a header of {width}: {list(row)!r}")
        lines.append(_row([cell(v) for v in row] + [""] * (width - len(row))))
    return "\n".join(lines)


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"
