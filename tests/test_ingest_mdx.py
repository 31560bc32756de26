"""MDX pages (Docusaurus, Nextra) are among the default suffixes: imports, exports, JSX tags and comments
go, the prose inside components and every code block stay, and the page chunks like Markdown."""

from __future__ import annotations

from pathlib import Path

from promptly.ingest.documents import Document, SourceConfig, load_source
from promptly.ingest.formats import mdx_to_markdown

from .conftest import compose

PAGE = '''---
title: Installing quillmq
sidebar_position: 2
---
import Tabs from '@theme/Tabs';
import TabItem from '@theme/TabItem';
export const meta = {
  author: "docs team",
};

# Install

{/* maintainers: keep the versions in sync */}
quillmq needs <strong>Linux 5.4</strong> or newer. See <https://quillmq.example/requirements>.

<Tabs groupId="os">
  <TabItem value="deb" label="Debian">
    Install the package with `apt install quillmq`.
  </TabItem>
  <TabItem
    value="docker"
    label="Docker">
    The image listens on port 5740.
  </TabItem>
</Tabs>

:::tip Fast path
Use the Docker image to try quillmq.
:::

```jsx
import Thing from './thing';
<Thing enabled={true} />
```

<Admonition type="note" icon={<Icon />}>Data lives in `/var/lib/<name>`.</Admonition>
<img src="/arch.png" alt="architecture" />
'''


def test_mdx_is_stripped_to_its_text() -> None:
    title, text = mdx_to_markdown(PAGE)
    assert title == "Installing quillmq"
    for gone in ("import Tabs", "export const", "author:", "<Tabs", "TabItem", "label=", "</", "<strong>",
                 "maintainers: keep", "sidebar_position", "<img", "Admonition", ":::"):
        assert gone not in text.replace("import Thing", "").replace("<Thing", ""), gone
    for kept in ("# Install", "quillmq needs Linux 5.4 or newer.", "https://quillmq.example/requirements",
                 "Install the package with `apt install quillmq`.", "The image listens on port 5740.",
                 "Tip: Fast path", "Use the Docker image to try quillmq.",
                 "```jsx\nimport Thing from './thing';\n<Thing enabled={true} />\n```",  # code stays as written
                 "Data lives in `/var/lib/<name>`."):  # inline code too
        assert kept in text, kept


def test_mdx_is_a_default_suffix_and_loads_as_markdown(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "install.mdx").write_text(PAGE, encoding="utf-8")
    (docs / "plain.md").write_text("# Plain\n\nA Markdown page.", encoding="utf-8")
    cfg = compose("ingest", [f"paths.root_dir={tmp_path}"])
    assert ".mdx" in cfg.ingest.source.suffixes  # the shipped config, not only the schema default
    assert ".mdx" in SourceConfig(path=str(docs)).suffixes
    loaded = {d.id: d for d in load_source(SourceConfig(path=str(docs), suffixes=list(cfg.ingest.source.suffixes)),
                                           "test") if isinstance(d, Document)}
    assert sorted(loaded) == ["install.mdx", "plain.md"]
    page = loaded["install.mdx"]
    assert page.title == "Installing quillmq" and page.metadata["format"] == "markdown"
    assert "The image listens on port 5740." in page.text and "<TabItem" not in page.text
