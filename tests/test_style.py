"""The library stays readable: short modules and functions, every public function documented and typed."""
from __future__ import annotations

import ast
import re
import subprocess
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


# A path that names one machine: a user's home, a container's root or work folder, a temporary folder, a
# Windows profile (Colab's /content, which setup cells name on purpose, is not one machine). The committed outputs and texts must read the same on every student's machine.
MACHINE_PATH = re.compile(r"(?<![\w.])(?:/(?:home|Users|root|work|tmp|private/var|var/folders|mnt)/"
                          r"|[A-Za-z]:\\\\(?:Users|Windows)\\\\)")
COMMITTED_FOLDERS = ("notebooks", "results", "docs")


def _committed(*folders: str) -> list[Path]:
    root = PACKAGE.parent
    try:
        out = subprocess.run(["git", "ls-files", "-z", *folders], cwd=root, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (an unpacked copy): every file there
        return [p for f in folders for p in (root / f).rglob("*") if p.is_file()]
    return [root / name for name in out.decode().split("\0") if name]


def test_the_machine_path_pattern_finds_what_it_should():
    for path in ("/home/ada/imix", "/root/.cache/imix_teach", "/work/shared/data", "/tmp/x.json", "C:\\\\Users\\\\ada"):
        assert MACHINE_PATH.search(f'"loaded from {path}"'), path
    for fine in ("results/regime/table.md", "../data/cifar10", "https://example.org/work/x", "~/.cache/imix_teach"):
        assert not MACHINE_PATH.search(fine), fine


def test_no_committed_file_under_notebooks_results_or_docs_names_a_machine_path():
    found = []
    for path in _committed(*COMMITTED_FOLDERS):
        try:
            text = path.read_text()
        except (UnicodeDecodeError, FileNotFoundError):  # a picture, or a file deleted but not yet committed
            continue
        found += [f"{path.relative_to(PACKAGE.parent)}: {m.group(0)}…" for m in MACHINE_PATH.finditer(text)]
    assert not found, "absolute machine paths (write them relative, or ~ for the home folder):\n" + "\n".join(found[:20])
