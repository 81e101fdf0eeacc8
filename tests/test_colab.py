"""The Colab path: badges and install cells agree with pyproject.toml, and the install cell works.

The install cell runs before imix_teach exists, so it is tested by running its text in a fresh
interpreter with a stand-in `pip` module that records what it was asked to install.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import sync_notebooks  # noqa: E402

from imix_teach.course import COLAB_CELL  # noqa: E402

REPOSITORY = sync_notebooks.repository_url()
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_every_notebook_badge_and_install_cell_match_pyproject():
    assert NOTEBOOKS
    assert sync_notebooks.main(["--check"]) == 0, "run: python scripts/sync_notebooks.py"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_name_no_other_repository(path):
    text = path.read_text(encoding="utf-8")
    owner_name = REPOSITORY.removeprefix("https://github.com/")
    assert f"colab.research.google.com/github/{owner_name}/blob/main/notebooks/{path.name}" in text
    # links to this project (Colab's, or any naming imix-teach) must use the one address; others are citations
    links = re.findall(r"colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)", text)
    links += [r for r in re.findall(r"github\.com/([\w.-]+/[\w.-]+)", text) if "imix-teach" in r]
    assert links and set(links) == {owner_name}, f"{path.name}: {set(links)} is not the Repository in pyproject.toml"


def _notebook(*cells: tuple[str, str]) -> dict:
    return {"cells": [{"cell_type": kind, "execution_count": None, "id": str(i), "metadata": {}, "outputs": [],
                       "source": text.splitlines(keepends=True)} for i, (kind, text) in enumerate(cells)]}


def test_sync_adds_missing_cells_follows_the_url_and_is_idempotent():
    nb = _notebook(("markdown", "# 07 · A title\n\nSome text."), ("code", "x = 1"))
    assert sync_notebooks.sync(nb, "07_x.ipynb", REPOSITORY)
    title, install, code = ("".join(c["source"]) for c in nb["cells"])
    assert title == "# 07 · A title\n\n" + sync_notebooks.badge_line(REPOSITORY, "07_x.ipynb") + "\n\nSome text."
    assert install == COLAB_CELL.format(repository=REPOSITORY) and code == "x = 1"
    assert not sync_notebooks.sync(nb, "07_x.ipynb", REPOSITORY)
    nb["cells"][1]["outputs"] = ["stale"]
    assert sync_notebooks.sync(nb, "07_x.ipynb", "https://github.com/someone/fork")
    text = json.dumps(nb)
    assert "someone/fork/blob/main/notebooks/07_x.ipynb" in text
    assert "".join(nb["cells"][1]["source"]) == COLAB_CELL.format(repository="https://github.com/someone/fork")
    assert REPOSITORY not in text and nb["cells"][1]["outputs"] == [] and len(nb["cells"]) == 3


def test_badge_needs_a_github_repository():
    with pytest.raises(ValueError, match="Repository"):
        sync_notebooks.badge_line("https://gitlab.com/a/b", "00_start_here.ipynb")


def _run_install_cell(tmp_path, pip_exit: int, installed: bool = False):
    """Run the install cell in `tmp_path` with a recording stand-in for `python -m pip`."""
    fake = tmp_path / "fakepip" / "pip"
    fake.mkdir(parents=True)
    fake.joinpath("__init__.py").write_text("")
    fake.joinpath("__main__.py").write_text(
        f"import sys, pathlib\npathlib.Path({str(tmp_path / 'pip_args.txt')!r}).write_text(' '.join(sys.argv[1:]))\n"
        f"sys.exit({pip_exit})\n")
    hide = "" if installed else (  # imix_teach is importable in the test environment; pretend it is not
        "import importlib.util as u; f = u.find_spec\n"
        "u.find_spec = lambda name, *a: None if name == 'imix_teach' else f(name, *a)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "fakepip"), str(ROOT)])}
    code = hide + "exec(" + repr(COLAB_CELL.format(repository=REPOSITORY)) + ")"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    args = tmp_path / "pip_args.txt"
    return result, args.read_text() if args.exists() else None


def test_install_cell_does_nothing_where_imix_teach_is_installed(tmp_path):
    result, pip_args = _run_install_cell(tmp_path, pip_exit=0, installed=True)
    assert result.returncode == 0 and pip_args is None
    assert result.stdout == "imix-teach is already installed, so this cell installed nothing.\n"


def test_install_cell_prefers_a_wheel_beside_the_notebook(tmp_path):
    (tmp_path / "imix_teach-0.1.0-py3-none-any.whl").write_bytes(b"")
    result, pip_args = _run_install_cell(tmp_path, pip_exit=0)
    assert result.returncode == 0, result.stderr
    assert pip_args == "install -q imix_teach-0.1.0-py3-none-any.whl"
    assert result.stdout == "Installed imix-teach from imix_teach-0.1.0-py3-none-any.whl.\n"


def test_install_cell_falls_back_to_the_repository_and_says_what_to_do_when_that_fails(tmp_path):
    result, pip_args = _run_install_cell(tmp_path, pip_exit=1)
    assert pip_args == f"install -q imix-teach @ git+{REPOSITORY}"
    assert result.returncode != 0 and "RuntimeError" in result.stderr and "make bundle" in result.stderr
