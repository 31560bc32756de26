"""The package's import graph: stage packages are libraries (they import no verb), imports run down the
layers only, and no module imports itself back through another.

Every `import` in a module counts, function-local and TYPE_CHECKING ones included: a lazy import still
couples the two modules.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "promptly"

LAYERS: list[set[str]] = [
    {"errors", "records", "textsafe", "metrics_catalog", "utils"},
    {"store"},
    {"ingest", "retrieval"},
    {"data", "settings"},
    {"model", "llm_clients", "evidence"},
    {"answering"},
    {"evaluation"},
    {"qa", "bias", "publish", "launch", "notify", "serving"},
    {"verbs", "__main__"},
]
"""promptly's top-level modules and packages, lowest first: a module may import its own layer or below."""

STAGES = {"store", "ingest", "data", "model", "evaluation", "bias", "publish", "serving", "launch", "notify", "qa"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the promptly modules it imports (a `from package import name` counts as the submodule
    when `name` is one)."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py") if "_configs" not in p.parts}
    graph: dict[str, set[str]] = defaultdict(set)

    def known(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
            for target in targets:
                resolved = known(target) if target.startswith("promptly") else None
                if resolved and resolved != name:
                    graph[name].add(resolved)
    return graph


def top_level(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def layer_of(module: str) -> int:
    part = top_level(module)
    for index, members in enumerate(LAYERS):
        if part in members:
            return index
    raise AssertionError(f"{module}: add its top-level name ({part}) to a layer in tests/test_import_layers.py")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in list(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_every_top_level_module_has_a_layer() -> None:
    for module in import_graph():
        layer_of(module)


def test_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_stage_packages_import_no_verb() -> None:
    offenders = sorted(f"{source} -> {target}" for source, targets in import_graph().items()
                       for target in targets if top_level(source) in STAGES and top_level(target) == "verbs")
    assert offenders == []


def test_imports_run_down_the_layers() -> None:
    upward = sorted(f"{source} -> {target}" for source, targets in import_graph().items() for target in targets
                    if layer_of(target) > layer_of(source))
    assert upward == []


def test_every_verb_of_the_cli_is_a_module_of_promptly_verbs() -> None:
    from promptly.verbs.cli import VERBS

    assert {verb.module for verb in VERBS.values()} == {f"promptly.verbs.{name}" for name in VERBS}
