"""reStructuredText pages (Sphinx documentation) are among the default suffixes and are parsed by docutils:
Sphinx-only roles keep their visible text, Sphinx-only directives keep their content (code as code) or drop
(toctree), headings become `#` lines, and no `:role:` or `.. name::` markup is left in the text."""

from __future__ import annotations

import re
from pathlib import Path

from promptly.ingest.documents import Document, LoadFailure, SourceConfig, load_source
from promptly.ingest.rst import rst_to_markdown

from .conftest import compose

PAGE = """\
.. _installing:

==================
Installing quillmq
==================

.. meta::
   :description: How to install quillmq.

.. toctree::
   :maxdepth: 2
   :hidden:

   getting-started
   reference/options

quillmq needs Linux 5.4 or newer; see :ref:`the requirements <requirements>`, :doc:`reference/options`
and :ref:`port-settings`. Pass :option:`--user` to install for one user (:py:class:`~quillmq.broker.Broker`
starts on its own, :pep:`440` versions).

Packages
========

.. tab:: Debian

   .. code-block:: shell
      :caption: install it

      apt install quillmq
      systemctl enable quillmq

   The service listens on port 5740.

.. tab:: Docker

   The image is ``quillmq/quillmq:3``.

.. note::
   Data lives in ``/var/lib/quillmq``.

.. versionadded:: 3.1
   The ``--user`` install.

.. pip-command-usage:: install

Configuration
-------------

The default queue depth is **1000**.
"""


def test_rst_is_parsed_and_sphinx_markup_reads_as_text() -> None:
    title, text = rst_to_markdown(PAGE)
    assert title == "Installing quillmq"
    lines = text.splitlines()
    for heading in ("# Installing quillmq", "## Packages", "### Configuration"):  # heading path kept
        assert heading in lines, heading
    for kept in ("see the requirements, reference/options and port-settings.",  # role text, not markup
                 "Pass --user to install for one user", "Broker starts on its own", "PEP 440 versions",
                 "Debian", "Docker", "The service listens on port 5740.", "The image is quillmq/quillmq:3.",
                 "Data lives in /var/lib/quillmq.", "Added in version 3.1", "The default queue depth is 1000."):
        assert kept in " ".join(text.split()), kept
    # the code block stays a code block, its lines as written
    assert "```\napt install quillmq\nsystemctl enable quillmq\n```" in text
    # nothing of the markup is left; the toctree and the build-only directive drop
    assert not re.search(r"\.\.\s+[\w:-]+::|:[\w:]+:`|(?<!`)``(?!`)|maxdepth|getting-started|installing:", text), text
    assert "pip-command-usage" not in text and "install it" not in text


def test_rst_is_a_default_suffix_and_a_page_with_no_text_is_reported(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "guide").mkdir(parents=True)
    (docs / "guide" / "install.rst").write_text(PAGE, encoding="utf-8")
    (docs / "plain.md").write_text("# Plain\n\nA Markdown page.", encoding="utf-8")
    (docs / "index.rst").write_text(".. toctree::\n\n   guide/install\n", encoding="utf-8")  # nothing to read
    cfg = compose("ingest", [f"paths.root_dir={tmp_path}"])
    assert ".rst" in cfg.ingest.source.suffixes  # the shipped config, not only the schema default
    items = list(load_source(SourceConfig(path=str(docs), suffixes=list(cfg.ingest.source.suffixes)), "test"))
    loaded = {d.id: d for d in items if isinstance(d, Document)}
    failed = {f.path: f.reason for f in items if isinstance(f, LoadFailure)}
    assert sorted(loaded) == ["guide/install.rst", "plain.md"]
    assert list(failed) == ["index.rst"] and "empty" in failed["index.rst"]
    page = loaded["guide/install.rst"]
    assert page.title == "Installing quillmq" and page.metadata["format"] == "markdown"
    assert "The service listens on port 5740." in page.text and ".. tab::" not in page.text


def test_sphinx_names_are_only_known_while_a_page_is_parsed() -> None:
    """docutils' role and directive registries are process-wide: a parse leaves them as it found them."""
    from docutils.parsers.rst import directives, roles

    before = (set(roles._roles), set(directives._directives))
    rst_to_markdown(PAGE)
    assert (set(roles._roles), set(directives._directives)) == before
