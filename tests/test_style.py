"""The library stays readable: short modules and functions, every public function documented and typed."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "imix_teach"
FILES = sorted(PACKAGE.rglob("*.py"))


def _functions(tree: ast.Module):
    """(qualified name, node) of every public module-level function and public-class method."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            yield node.name, node
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and not item.name.startswith("_"):
                    yield f"{node.name}.{item.name}", item


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_stay_short(path):
    source = path.read_text()
    assert source.count("\n") <= 400, f"{path.name}: {source.count(chr(10))} lines (at most 400)"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            assert length <= 60, f"{path.name}: {node.name} has {length} lines (at most 60)"


@pytest.mark.parametrize("path", [p for p in FILES if not p.name.startswith("_") or p.name == "__init__.py"],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_public_functions_have_docstrings_and_type_hints(path):
    missing = []
    for name, node in _functions(ast.parse(path.read_text())):
        args = [a for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs if a.arg not in ("self", "cls")]
        if ast.get_docstring(node) is None:
            missing.append(f"{name}: no docstring")
        if node.returns is None or any(a.annotation is None for a in args):
            missing.append(f"{name}: missing type hints")
    assert not missing, f"{path.relative_to(PACKAGE)}: " + "; ".join(missing)
