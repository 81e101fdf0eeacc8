"""MkDocs hooks that turn the committed notebooks and results into the course website (mkdocs.yml).

Nothing is executed: each notebook is read as JSON and shown with the outputs it was committed with.
Everything the pages load comes from the build itself (MathJax from the jupyter-server-mathjax
package, the figures from results/), so the site works with no network.
"""
from __future__ import annotations

import copy
import json
import posixpath
import re
import shutil
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10; pytest depends on tomli there
    import tomli as tomllib

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import course_table  # noqa: E402  (scripts/ is not a package)
import slides  # noqa: E402  (beside this file)

BUILD = ROOT / "build" / "site-src"  # the notebooks' display copies, under notebooks/ (ignored by git)
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = "*An interactive widget is here: open the notebook in Jupyter or Colab to use it.*"
BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)\s*")
RESULT_FIGURES = ("results/cpu/results.png", "results/regime/regime_epochs.png", "results/regime/regime_data.png",
                  *(f"results/domains/domains_{name}.png" for name in ("fsdd", "covtype", "higgs")))
REGIME = ROOT / "results" / "regime"


def repository() -> str:
    """The repository's address, from pyproject.toml's [project.urls] (the one place it is written)."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["urls"]["Repository"].rstrip("/")


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Course nav in notebook order (whatever notebooks/ holds) and the Colab address for the pages."""
    course = [{course_table.short_title(p): f"notebooks/{p.name}"} for p in course_table.notebooks()]
    config.nav = [{"Home": "index.md"}, {"Course": course}, *config.nav]
    config.extra["colab"] = "https://colab.research.google.com/github/" + repository().split("github.com/")[1] + "/blob/main/"
    return config


def display_copy(nb: dict) -> dict:
    """The notebook as the site shows it: widgets as their committed pictures, no external badge.

    A widget's live view needs a Jupyter kernel (or widget JavaScript from a CDN); each widget output
    was saved with a PNG of its default state beside the view, so dropping the view shows that PNG.
    A widget saved without a picture is shown as a one-line note. The Colab badge is an external
    image; the page header links to Colab instead.
    """
    nb = copy.deepcopy(nb)
    nb["metadata"].pop("widgets", None)
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            cell["source"] = BADGE.sub("", "".join(cell["source"]))
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW in data and "image/png" not in data:  # saved without a picture: say what it is
                output["data"] = {"text/markdown": WIDGET_NOTE}
            data.pop(WIDGET_VIEW, None)
    return nb


def _write_if_changed(path: Path, text: str) -> None:
    """Write only on a change, so a rebuild (mkdocs serve) does not see a new file and loop."""
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns .ipynb files into pages
def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add a page per notebook (from its display copy) and the result figures that exist."""
    for path in course_table.notebooks():
        uri = f"notebooks/{path.name}"
        _write_if_changed(BUILD / uri, json.dumps(display_copy(json.loads(path.read_text(encoding="utf-8"))), indent=1))
        # A plain File rooted in BUILD, not File.generated: mkdocs-jupyter's wrapper loses a generated file's path.
        files.append(File(uri, src_dir=str(BUILD), dest_dir=config.site_dir, use_directory_urls=config.use_directory_urls))
    for figure in RESULT_FIGURES:
        if (ROOT / figure).exists():
            files.append(File.generated(config, figure, abs_src_path=str(ROOT / figure)))
    return files


def _course_table() -> str:
    """README's course table, its links pointing at the notebook pages (docs/ mirrors the README's paths)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start, end = course_table.table_span(readme)
    return readme[start:end]


def _headline_figure(page_uri: str) -> str:
    """The landing page's figure: the regime grid's, once it exists, else the committed CPU grid's."""
    up = "../" * page_uri.count("/")
    if (REGIME / "regime_data.png").exists():
        return f"![i-Mix's gain against pretext data size (results/regime)]({up}results/regime/regime_data.png)"
    return f"![i-Mix vs. baseline on four domains at CPU scale (results/cpu)]({up}results/cpu/results.png)"


def _outside_link(match: re.Match, page_dir: str, files: Files) -> str:
    """A link from docs/ to a file beside it in the repository, as it must read on the site.

    The pages link the way GitHub reads them (`../results/cpu/README.md` from docs/). On the site, a
    file that the build copies in (a result figure) is linked where it lands; any other file is
    linked on the repository's web page.
    """
    target = posixpath.normpath(posixpath.join("docs", page_dir, match.group(2)))
    if target.startswith("docs/") or not (ROOT / target).exists():
        return match.group(0)  # a page of the site, or a broken link that mkdocs --strict reports
    if files.get_file_from_path(target) is not None:
        return f"{match.group(1)}({posixpath.relpath(target, page_dir or '.')}{match.group(3) or ''})"
    kind = "tree" if (ROOT / target).is_dir() else "blob"
    return f"{match.group(1)}({repository()}/{kind}/main/{target}{match.group(3) or ''})"


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Fill the <!-- include: NAME --> markers from the repository's current files; point links outside docs/."""
    uri = page.file.src_uri
    fills = {"course-table": _course_table, "headline-figure": lambda: _headline_figure(uri)}
    markdown = re.sub(r"<!-- include: ([\w-]+) -->", lambda m: fills[m.group(1)](), markdown)
    page_dir = posixpath.dirname(uri)
    return re.sub(r"(\])\((\.\./[^)#\s]+)(#[^)\s]*)?\)",
                  lambda m: _outside_link(m, page_dir, files), markdown)


def on_post_build(config: MkDocsConfig) -> None:
    """Copy MathJax and the original notebooks (the download links) into the built site; write the slide decks."""
    import jupyter_server_mathjax

    site = Path(config.site_dir)
    mathjax = Path(jupyter_server_mathjax.__file__).parent / "static"
    shutil.copytree(mathjax, site / "assets" / "mathjax", dirs_exist_ok=True)
    for path in course_table.notebooks():
        shutil.copy2(path, site / "notebooks" / path.name)
    slides.write_decks(site, {p.stem: json.loads((BUILD / "notebooks" / p.name).read_text(encoding="utf-8"))
                              for p in course_table.notebooks()})
