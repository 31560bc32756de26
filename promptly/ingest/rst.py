"""reStructuredText (Sphinx documentation) to Markdown-ish text, through docutils' own parser.

Docutils knows only its own roles and directives; a Sphinx page uses many more (`:ref:`, `:doc:`,
`.. tab::`, `.. code-block::`, `.. toctree::`, extensions' own). Unknown names would come out as error
text with their markup, so for the duration of one parse every unknown name the page uses is given a
plain meaning: a role shows its visible text, a directive keeps its argument and content, code
directives keep their content as code, and navigation/build-only directives drop. File inclusion and
raw output are off: a page never reads other files.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_ROLE_USE = re.compile(r"(?<![\w`]):((?:[A-Za-z][\w.+-]*)(?::[A-Za-z][\w.+-]*)?):`")
_DIRECTIVE_USE = re.compile(r"^\s*\.\.\s+([A-Za-z][\w.+:-]*?)::", re.MULTILINE)
_TOP_HEADING = re.compile(r"^# (.+)$", re.MULTILINE)
_EXPLICIT_TARGET = re.compile(r"^(.*?)\s*<[^<>]*>$", re.DOTALL)
# Directives whose content is code (Sphinx's code-block and its aliases; literalinclude reads a file: it drops).
_CODE = {"code-block", "sourcecode", "doctest", "testcode", "testoutput", "ipython", "prompt", "jupyter-execute"}
# Directives that only build navigation, indexes or settings: nothing a reader would quote.
_DROP = {"toctree", "index", "highlight", "literalinclude", "autosummary", "currentmodule", "module",
         "program", "default-role", "default-domain", "tabularcolumns", "only-html", "meta", "sectionauthor",
         "moduleauthor", "codeauthor", "graphviz", "digraph", "graph", "inheritance-diagram", "mermaid",
         "plot", "todolist", "automodule"}
_VERSION = {"versionadded": "Added in version", "versionchanged": "Changed in version",
            "deprecated": "Deprecated since version", "versionremoved": "Removed in version"}
# Roles whose text is code (shown as inline code, so html_to_markdown keeps it as written).
_CODE_ROLES = {"option", "command", "program", "file", "samp", "envvar", "kbd", "makevar", "mailheader",
               "regexp", "code", "literal"}
_REGISTRY_LOCK = threading.Lock()


def rst_to_markdown(source: str) -> tuple[str, str]:
    """Title (the document's title) and Markdown-ish text of a reStructuredText page.

    Parsed quietly: nothing is printed for markup docutils does not know, and what docutils reports as an
    error (an unknown substitution, a skipped title level) costs only that piece. A severe error, or a
    crash inside docutils, raises DocumentError naming it, so the file is reported and skipped.
    """
    from docutils.core import publish_parts
    from docutils.utils import SystemMessage
    from docutils.writers.html5_polyglot import Writer

    from promptly.errors import DocumentError
    from promptly.ingest.formats import html_to_markdown

    settings = {
        "report_level": 5,  # nothing printed: Sphinx-only markup is expected, not a mistake
        "halt_level": 4,  # a severe error (broken structure) stops the parse; errors (unknown names) do not
        "warning_stream": False,
        "file_insertion_enabled": False,  # `.. include::` and friends never read other files
        "raw_enabled": False,
        "embed_stylesheet": False,
        # Every section stays a heading (docutils would turn a lone second-level section into a subtitle
        # paragraph); the title is the first top-level heading, as Sphinx takes it.
        "doctitle_xform": False,
        "initial_header_level": 1,
        "syntax_highlight": "none",  # code blocks as plain text, not split into token spans
        "traceback": True,  # a halt raises SystemMessage instead of exiting the process
    }
    try:
        with _sphinx_names(source):
            parts = publish_parts(source=source, writer=Writer(), settings_overrides=settings)
    except SystemMessage as err:
        raise DocumentError(f"reStructuredText: {_first_line(err)}") from None
    except (ValueError, TypeError, IndexError, KeyError, AttributeError, NotImplementedError) as err:
        raise DocumentError(f"reStructuredText could not be parsed: {_first_line(err)}") from None
    _, text = html_to_markdown(parts["html_body"])
    first = _TOP_HEADING.search(text)
    return (first.group(1).strip() if first else ""), text


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return re.sub(r"^<string>:\d+: \(\w+/\d\) ", "", lines[0]) if lines else type(err).__name__


@contextmanager
def _sphinx_names(source: str) -> Iterator[None]:
    """Give each role and directive the page uses that docutils does not know a plain meaning, and the
    code directives Sphinx extends (`:caption:`, `:emphasize-lines:` ...) one that takes any option; put
    docutils' module-global registries back as they were afterwards."""
    from docutils.parsers.rst import directives, roles
    from docutils.parsers.rst.languages import en

    def known(name: str, registry: dict[str, Any], language: dict[str, str], canonical: dict[str, Any]) -> bool:
        return name in registry or name in language or name in canonical

    with _REGISTRY_LOCK:
        saved_roles = {name: roles._roles.get(name) for name in {m.lower() for m in _ROLE_USE.findall(source)}
                       if not known(name, roles._roles, en.roles, roles._role_registry)}
        saved_directives = {name: directives._directives.get(name)
                            for name in {m.lower() for m in _DIRECTIVE_USE.findall(source)}
                            if name in _CODE or name == "code"
                            or not known(name, directives._directives, en.directives,
                                         directives._directive_registry)}
        for name in saved_roles:
            roles._roles[name] = _plain_role(name)
        for name in saved_directives:
            directives._directives[name] = _plain_directive(name)
        try:
            yield
        finally:
            for registry, saved in ((roles._roles, saved_roles), (directives._directives, saved_directives)):
                for name, before in saved.items():
                    if before is None:
                        registry.pop(name, None)
                    else:
                        registry[name] = before


def _plain_role(name: str) -> Callable[..., tuple[list[Any], list[Any]]]:
    """A role that shows what Sphinx would show: the explicit title of `Text <target>`, else the target
    (`~a.b.c` shows `c`, a leading `!` is dropped)."""
    from docutils import nodes
    from docutils.utils import unescape

    is_code = name.rsplit(":", 1)[-1] in _CODE_ROLES

    def role(_name: str, rawtext: str, text: str, _lineno: int, _inliner: Any,
             options: dict[str, Any] | None = None, content: list[str] | None = None
             ) -> tuple[list[Any], list[Any]]:
        shown = unescape(text)
        explicit = _EXPLICIT_TARGET.match(shown)
        if explicit and explicit.group(1):
            shown = explicit.group(1)
        else:
            shown = shown.lstrip("!")
            if shown.startswith("~"):
                shown = shown[1:].rsplit(".", 1)[-1]
        node = nodes.literal(rawtext, shown) if is_code else nodes.inline(rawtext, shown)
        return [node], []

    return role


class _AnyOption(dict[str, Callable[[str | None], Any]]):
    """An option_spec that accepts every option (Sphinx directives have many; none changes the text)."""

    def __missing__(self, key: str) -> Callable[[str | None], Any]:
        return _unchanged


def _unchanged(argument: str | None) -> str:
    return argument or ""


def _plain_directive(name: str) -> type:
    """A directive that keeps what a reader sees: code directives' content as a literal block, others'
    argument (a tab's label, an option's name) as a paragraph followed by their content parsed as reST;
    navigation and build directives, and any directive without content, drop."""
    from docutils import nodes
    from docutils.parsers.rst import Directive

    base = name.rsplit(":", 1)[-1]

    class PlainDirective(Directive):
        required_arguments = 0
        optional_arguments = 1
        final_argument_whitespace = True
        has_content = True
        option_spec = _AnyOption(name=_unchanged)

        def run(self) -> list[Any]:
            if base in _VERSION and self.arguments:  # `.. versionadded:: 2.1 text`: the text may be the argument
                version, *said = self.arguments[0].split(None, 1)
                lead = nodes.paragraph()
                lead += nodes.Text(f"{_VERSION[base]} {version}" + (": " if said else ""))
                if said:  # the rest of the argument is inline reST (``code``, roles)
                    inline, _problems = self.state.inline_text(" ".join(said[0].split()), self.lineno)
                    lead.extend(inline)
                out: list[Any] = [lead]
                if self.content:
                    box = nodes.container()
                    self.state.nested_parse(self.content, self.content_offset, box)
                    out.extend(box.children)
                return out
            if base in _DROP or not self.content:
                return []
            if base in _CODE or base == "code":
                code = "\n".join(self.content)
                return [nodes.literal_block(code, code)]
            out = []
            if self.arguments:
                label = nodes.paragraph()
                label += nodes.strong(self.arguments[0], self.arguments[0])
                out.append(label)
            box = nodes.container()
            self.state.nested_parse(self.content, self.content_offset, box)
            out.extend(box.children)
            return out

    return PlainDirective
