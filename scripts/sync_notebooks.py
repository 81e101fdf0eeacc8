"""Write every notebook's "Open in Colab" badge and install cell from pyproject.toml's [project.urls].

    python scripts/sync_notebooks.py           # rewrite what is out of date, print what changed
    python scripts/sync_notebooks.py --check   # change nothing; exit 1 if any notebook is out of date

The repository's address is written once, as `Repository` in pyproject.toml. This script touches
only two cells of each notebook: the badge line of the first markdown cell (added under the title
if missing) and the install code cell (the code cell that mentions `google.colab`; added after the
first markdown cell if missing), whose template is `imix_teach.course.COLAB_CELL`. It is
idempotent, and keeps the byte format nbformat writes, so running it twice changes nothing.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10; pytest depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from imix_teach.course import COLAB_CELL  # noqa: E402  (needs ROOT on the path first)

NOTEBOOKS = ROOT / "notebooks"
BRANCH = "main"  # the branch the badges open
BADGE = re.compile(r"^\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)$", re.MULTILINE)
INSTALL_MARKER = "google.colab"
INSTALL_CELL_ID = "colab-install"


def repository_url(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """The `Repository` entry of [project.urls]: the only place the address is written."""
    urls = tomllib.loads(pyproject.read_text())["project"].get("urls", {})
    if "Repository" not in urls:
        raise ValueError(f"{pyproject} needs [project.urls] Repository = \"https://github.com/OWNER/NAME\"")
    return urls["Repository"]


def badge_line(repository: str, notebook: str) -> str:
    """Markdown of the badge that opens `notebooks/<notebook>` of `repository` in Colab."""
    match = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+?)(?:\.git)?/?", repository)
    if not match:
        raise ValueError(f"Repository must be a https://github.com/OWNER/NAME address (Colab opens only GitHub), got {repository!r}")
    owner, name = match.groups()
    target = f"https://colab.research.google.com/github/{owner}/{name}/blob/{BRANCH}/notebooks/{notebook}"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({target})"


def _lines(text: str) -> list[str]:
    """A cell's source as nbformat stores it: lines that keep their newline, the last without."""
    return text.splitlines(keepends=True)


def _set_source(cell: dict, text: str) -> bool:
    """Give `cell` the source `text`; a code cell that changed loses its now stale outputs."""
    if "".join(cell["source"]) == text:
        return False
    cell["source"] = _lines(text)
    if cell["cell_type"] == "code":
        cell["outputs"], cell["execution_count"] = [], None
    return True


def sync(nb: dict, name: str, repository: str) -> bool:
    """Update the badge and install cell of notebook `nb` (file name `name`) in place; True if it changed."""
    cells = nb["cells"]
    first_md = next(i for i, c in enumerate(cells) if c["cell_type"] == "markdown")
    text, badge = "".join(cells[first_md]["source"]), badge_line(repository, name)
    if BADGE.search(text):
        text = BADGE.sub(lambda _: badge, text, count=1)
    else:  # under the title line
        title, _, rest = text.partition("\n")
        text = f"{title}\n\n{badge}" + (f"\n\n{rest.lstrip()}" if rest.strip() else "")
    changed = _set_source(cells[first_md], text)
    install = COLAB_CELL.format(repository=repository)
    found = [c for c in cells if c["cell_type"] == "code" and INSTALL_MARKER in "".join(c["source"])]
    if found:
        return _set_source(found[0], install) or changed
    cells.insert(first_md + 1, {"cell_type": "code", "execution_count": None, "id": INSTALL_CELL_ID,
                                "metadata": {}, "outputs": [], "source": _lines(install)})
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook is out of date")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    args = parser.parse_args(argv)
    repository, stale = repository_url(), []
    for path in args.notebooks or sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        if sync(nb, path.name, repository):
            stale.append(path.name)
            if not args.check:  # the byte format nbformat itself writes
                path.write_text(json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    verb = "out of date" if args.check else "updated"
    print(f"{len(stale)} notebook(s) {verb} for {repository}" + "".join(f"\n  {n}" for n in stale))
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
