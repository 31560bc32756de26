"""Tables in the prompt: each row written as "column: value" pairs, so a small model reads which column a
value is in; the documents, citations and evidence keep the table as it is."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from promptly.data.config import PromptConfig
from promptly.data.prompts import PromptBuilder, prompt_config
from promptly.data.tables import linearize_tables, row_with_header
from promptly.errors import ConfigError

INSTALL = """## System requirements

| Resource | Minimum | Recommended for production |
|----------|:-------:|----------------------------|
| CPU      | 2 cores | 4 or more cores            |
| Memory   | 2 GB    |                            |

Network file systems are **not supported**.

```text
| not | a table |
|-----|---------|
| x   | y       |
```

a | b is not a table either
"""


def test_each_row_names_its_columns_and_everything_else_is_kept() -> None:
    lines = linearize_tables(INSTALL).split("\n")
    assert "Resource: CPU; Minimum: 2 cores; Recommended for production: 4 or more cores" in lines
    assert "Resource: Memory; Minimum: 2 GB" in lines  # an empty cell is left out
    assert not any(line.startswith("| Resource") or line.startswith("|----------|") for line in lines)
    assert "| x   | y       |" in lines and "|-----|---------|" in lines  # inside a code block: as written
    assert "a | b is not a table either" in lines and "Network file systems are **not supported**." in lines
    assert linearize_tables("no tables here\n| lone | row |") == "no tables here\n| lone | row |"
    assert linearize_tables("| Key | Value |\n|---|---|\n| a | 1 | extra |\n| b |") == "Key: a; Value: 1; extra\nKey: b"


def builder(tables: str) -> PromptBuilder:
    return PromptBuilder(PromptConfig(tables=tables), SimpleNamespace(chat_template=None))


def test_the_prompt_context_has_rows_by_default_and_markdown_on_request() -> None:
    chunks = [{"document_id": "quillmq/install.md", "ordinal": 0, "content": INSTALL}]
    assert PromptConfig().tables == "rows"
    rows = builder("rows").format_context(chunks)
    assert rows.startswith("[1] quillmq/install.md\n## System requirements")
    assert "Resource: Memory; Minimum: 2 GB" in rows and "| Memory" not in rows
    assert builder("markdown").format_context(chunks) == "[1] quillmq/install.md\n" + INSTALL
    with pytest.raises(ConfigError, match="rows or markdown"):
        builder("html")


def test_a_prompt_saved_before_the_option_keeps_tables_as_its_model_saw_them() -> None:
    saved = {"system": "S", "chunk_template": "[{number}] {content}"}  # a run's config from an older version
    assert prompt_config(saved).tables == "markdown"
    assert prompt_config({**saved, "tables": "rows"}).tables == "rows"
    assert prompt_config(None).tables == "rows"


def test_a_row_of_a_document_is_named_after_its_columns_for_scoring() -> None:
    memory = INSTALL.index("| Memory")
    end = INSTALL.index("\n", memory)
    assert row_with_header(INSTALL, memory, end) == "Resource: Memory; Minimum: 2 GB"
    header = INSTALL.index("| Resource")
    assert row_with_header(INSTALL, header, INSTALL.index("\n", header)) is None  # the header is no body row
    prose = INSTALL.index("Network file")
    assert row_with_header(INSTALL, prose, INSTALL.index("\n", prose)) is None
    code_row = INSTALL.index("| x ")
    assert row_with_header(INSTALL, code_row, INSTALL.index("\n", code_row)) is None  # in a code block
