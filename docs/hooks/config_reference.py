"""MkDocs hook: the configuration reference page, generated at build time from the typed config schemas.

Every schema registered in Hydra's ConfigStore by promptly's schema module becomes one section: its keys
(nested dataclasses flattened to dotted keys), types, defaults and field docstrings (the string literal
right after each field, read with `ast`, as litgpt's `args.py` documents its fields). Built on every
`mkdocs build`, so the page can never disagree with the code.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import importlib
import inspect
import json
import textwrap
import types
import typing
from collections.abc import Iterator
from typing import Any

SCHEMAS_MODULE = "promptly.verbs.schemas"
"""The module that registers every schema in the ConfigStore (the one place to change when it moves)."""

PAGE = "config-reference.md"
"""Where the page appears in the site (named in mkdocs.yml's nav)."""


@dataclasses.dataclass(frozen=True)
class Row:
    key: str
    type: str
    default: str
    doc: str


@dataclasses.dataclass(frozen=True)
class Section:
    title: str
    anchor: str
    prefix: str
    schema: type
    rows: list[Row]


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> docstring for `cls` and its dataclass bases (a subclass's docstring wins)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0]
        assert isinstance(body, ast.ClassDef)
        for stmt, after in zip(body.body, [*body.body[1:], None], strict=True):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[stmt.target.id] = inspect.cleandoc(after.value.value)
    return docs


def _unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _render_default(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    if value == "???":
        return "required"
    if isinstance(value, str):
        text = json.dumps(value)
        if len(text) > 48:
            text = text[:44] + '…"'
        return f"`{text}`"
    if isinstance(value, bool) or value is None:
        return f"`{str(value).lower() if value is not None else 'null'}`"
    return f"`{value!r}`"


def _default(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        return _render_default(f.default)
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        if isinstance(value, list | dict | tuple):
            return _render_default(value)
        return ""
    return "required"


def _type_text(f: dataclasses.Field[Any], resolved: Any) -> str:
    text = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    out = f"`{text}`"
    inner = _unwrap_optional(resolved)
    if isinstance(inner, type) and issubclass(inner, enum.Enum):
        out += ": " + ", ".join(f"`{m.value}`" for m in inner)
    return out  # a pipe inside a code span does not split a Python-Markdown table cell


def rows(schema: type, prefix: str = "") -> Iterator[Row]:
    """One row per key; a nested dataclass contributes a row for itself (when documented) and its keys."""
    docs = field_docs(schema)
    try:
        hints = typing.get_type_hints(schema)
    except Exception:  # an annotation that does not resolve: fall back to its text
        hints = {}
    for f in dataclasses.fields(schema):
        resolved = hints.get(f.name, Any)
        key = prefix + f.name
        doc = docs.get(f.name, "" if f.name != "_target_" else "The class Hydra instantiates from this node.")
        inner = _unwrap_optional(resolved)
        if resolved is Any and not doc:
            continue  # a config group slot (`store: Any`): the group's own schema documents it
        if isinstance(inner, type) and dataclasses.is_dataclass(inner):
            doc = doc or inspect.cleandoc(inner.__doc__ or "")
            if doc:
                yield Row(key, f"`{inner.__name__}`", "", doc)
            yield from rows(inner, key + ".")
            continue
        yield Row(key, _type_text(f, resolved), _default(f), doc)


def sections() -> list[Section]:
    """Every promptly schema in the ConfigStore: entry configs (`promptly <verb>`) first, then groups."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    module = importlib.import_module(SCHEMAS_MODULE)
    register = getattr(module, "register_schemas", None)
    if callable(register):
        register()
    found: list[tuple[str | None, str, type]] = []

    def walk(node: dict[str, Any]) -> None:
        for value in node.values():
            if isinstance(value, dict):
                walk(value)
                continue
            schema = OmegaConf.get_type(value.node)
            if isinstance(schema, type) and dataclasses.is_dataclass(schema) \
                    and schema.__module__.startswith("promptly"):
                found.append((value.group, value.name.removesuffix(".yaml"), schema))

    walk(ConfigStore.instance().repo)
    out: list[Section] = []
    for group, name, schema in sorted(found, key=lambda t: (t[0] is not None, t[0] or "", t[1])):
        if group is None:
            verb = name.removesuffix("_schema").removeprefix("base_")
            title, prefix = f"`promptly {verb}`", ""
        else:
            title, prefix = f"`{group}` group (`{name}`)", group.replace("/", ".") + "."
        anchor = f"{group or 'verb'}-{name}".replace("/", "-").replace("_", "-")
        out.append(Section(title, anchor, prefix, schema, list(rows(schema, prefix))))
    return out


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated when the site is built, from the typed schemas registered in Hydra's ConfigStore "
        f"(`{SCHEMAS_MODULE}`) and their field docstrings, so it always matches the code. A key not listed "
        "for a schema fails at composition. Entry configs' keys are set as `key=value` after the verb; "
        "a group's keys with its prefix (`data.retrieval.k=5`). How the config tree is laid out: "
        "[Configuration](configuration.md).",
        "",
    ]
    for s in sections():
        lines += [f"## {s.title} {{#{s.anchor}}}", ""]
        schema = f"{s.schema.__module__}.{s.schema.__name__}"
        lines += [inspect.cleandoc(s.schema.__doc__ or ""), "", f"Schema: `{schema}`", ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        lines += [f"| `{r.key}` | {r.type} | {r.default} | {_cell(r.doc)} |" for r in s.rows]
        lines.append("")
    return "\n".join(lines)


def undocumented() -> list[str]:
    """Keys without a field docstring (printed by `python docs/hooks/config_reference.py --missing`)."""
    return [f"{s.schema.__module__}.{s.schema.__name__}: {r.key}" for s in sections() for r in s.rows if not r.doc]


def on_files(files: Any, config: Any) -> Any:
    """MkDocs event: add the generated page to the site's files."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, PAGE, content=render()))
    return files


if __name__ == "__main__":
    import sys

    print("\n".join(undocumented()) if "--missing" in sys.argv else render())
