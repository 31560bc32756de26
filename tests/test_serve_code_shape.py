"""The serving package stays in small pieces: the API is an assembly of routers (issue 26), not one
function with every route nested in it, and no function there grows past ~60 lines."""

from __future__ import annotations

import ast
from pathlib import Path

SERVING = Path(__file__).resolve().parents[1] / "promptly" / "serving"
MAX_LINES = 60


def functions(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(f"{path.relative_to(SERVING)}:{node.lineno} {node.name}", node.end_lineno - node.lineno + 1)
            for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno is not None]


def test_no_function_in_serving_is_longer_than_sixty_lines() -> None:
    found = [f for path in sorted(SERVING.rglob("*.py")) for f in functions(path)]
    assert len(found) > 50  # the walk saw the package
    assert [f for f in found if f[1] > MAX_LINES] == []


def test_create_app_is_a_short_assembly_with_no_route_inside() -> None:
    tree = ast.parse((SERVING / "api.py").read_text(encoding="utf-8"))
    create_app = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "create_app")
    assert create_app.end_lineno is not None and create_app.end_lineno - create_app.lineno < 40
    nested = [n.name for n in ast.walk(create_app) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
              and n is not create_app]
    assert nested == ["lifespan"], nested
