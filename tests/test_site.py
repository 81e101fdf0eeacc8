"""The course website: the README's course table, an offline build from the committed notebooks,
and every page opened in headless Chromium (scripts/site/check_site.py).

The build needs the docs extra (`pip install -e ".[docs]"`, which `make site` does) and the browser
test needs a system Chromium; without them these tests skip and say why.
"""
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "scripts" / "site")]
import check_site  # noqa: E402
import course_table  # noqa: E402

README = (ROOT / "README.md").read_text(encoding="utf-8")
NOTEBOOKS = [p.stem for p in course_table.notebooks()]
MISSING = [m for m in ("mkdocs", "material", "mkdocs_jupyter", "jupyter_server_mathjax", "playwright")
           if importlib.util.find_spec(m) is None]
needs_docs = pytest.mark.skipif(bool(MISSING), reason=f"the docs extra is not installed (no {', '.join(MISSING)}): "
                                                      "make site, or pip install -e '.[docs]'")
DEAD_PROXY = "http://127.0.0.1:9"  # nothing listens on the discard port: any download attempt fails at once


def test_readme_course_table_has_the_notebooks_time_lines():
    assert course_table.updated(README) == README, "README's course table is stale: run python scripts/course_table.py"


@pytest.mark.parametrize("text, quick, full", [
    ("about 10-25 s in quick mode, about 30 s in full mode", "10-25 s", "30 s"),
    ("5-7.5 minutes (37 s for the rerun; runs of 25-80 s each) in full mode, about 10-25 s in quick mode", "10-25 s", "5-7.5 min"),
    ("full mode took 3.4 minutes; quick mode (`IMIX_QUICK=1`) took about 10 seconds", "10 s", "3.4 min"),
    ("quick mode (`IMIX_QUICK=1`: 1 seed, 3 epochs) 16-20 s; full mode (84 runs of 2-15 s) 10.1 min", "16-20 s", "10.1 min"),
])
def test_time_lines_are_read_in_either_word_order(text, quick, full):
    assert (course_table.run_time(text, "quick"), course_table.run_time(text, "full")) == (quick, full)


def test_readme_is_short_and_keeps_the_results_block():
    assert README.count("\n") <= 120, f"README has {README.count(chr(10))} lines; move details into docs/"
    results = README[README.index("## Results"):]
    assert results.split("\n", 2)[2].startswith("<!-- regime-results:start -->")
    assert "<!-- regime-results:end -->" in results


def test_docs_links_lead_to_files_that_exist():
    for page in sorted((ROOT / "docs").glob("*.md")):
        for link in re.findall(r"\]\(((?!https?://|#)[^)#\s]+)", page.read_text(encoding="utf-8")):
            assert (page.parent / link).exists() or link.startswith("notebooks/"), f"{page.name} links to missing {link}"


SITE_INPUTS = ("mkdocs.yml", "README.md", "pyproject.toml", "docs", "notebooks", "results", "scripts/site",
               "scripts/course_table.py")


def _inputs_digest() -> str:
    """A hash of every file the site is built from: equal digests, equal sites."""
    digest = hashlib.sha256()
    for name in SITE_INPUTS:
        path = ROOT / name
        for file in sorted([path] if path.is_file() else (f for f in path.rglob("*") if f.is_file())):
            if "__pycache__" not in file.parts:
                digest.update(file.relative_to(ROOT).as_posix().encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="module")
def site() -> Path:
    """The site, built by `mkdocs build --strict` with every download blocked, once per set of inputs.

    Test workers (pytest-xdist) share one build: it goes to build/test-site/<digest of the inputs>,
    under a lock, and a worker that finds it there reuses it.
    """
    from filelock import FileLock

    out = ROOT / "build" / "test-site" / _inputs_digest()
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if not (out / "index.html").exists():
            env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "HTTP_PROXY": DEAD_PROXY, "HTTPS_PROXY": DEAD_PROXY,
                   "http_proxy": DEAD_PROXY, "https_proxy": DEAD_PROXY, "NO_PROXY": ""}
            start = time.perf_counter()
            result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(out)],
                                    cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, result.stdout + result.stderr
            print(f"site built in {time.perf_counter() - start:.1f} s")
            for old in out.parent.iterdir():  # builds of earlier inputs
                if old.is_dir() and old != out:
                    shutil.rmtree(old, ignore_errors=True)
    return out


@needs_docs
def test_site_has_a_page_and_the_download_of_every_notebook(site):
    for name in NOTEBOOKS:
        assert (site / "notebooks" / name / "index.html").exists(), f"no page for {name}"
        download = site / "notebooks" / f"{name}.ipynb"
        assert download.read_bytes() == (ROOT / "notebooks" / f"{name}.ipynb").read_bytes(), f"{name}: not the committed file"
        html = (site / "notebooks" / name / "index.html").read_text(encoding="utf-8")
        assert "interactive(children=" not in html, f"{name}: a widget shows as its text, not its picture"
        assert f'href="../{name}.slides.html"' in html, f"{name}: no Slides link"
        assert "Reveal.initialize" in (site / "notebooks" / f"{name}.slides.html").read_text(encoding="utf-8")
    assert (site / "assets" / "mathjax" / "MathJax.js").exists()
    assert (site / "assets" / "reveal.js" / "dist" / "reveal.js").exists()
    for page in ("install", "library", "cli", "reproduce", "results", "differences", "development"):
        assert (site / page / "index.html").exists(), f"no {page} page"


@needs_docs
def test_site_loads_nothing_from_the_network(site):
    """No page names an outside address to load (links to follow, such as Colab's, are fine)."""
    loads = re.compile(r"""<(?:script|img|link|iframe|source)\b[^>]*?\b(?:src|href)=["']?(?:https?:)?//""", re.I)
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        found = [m.group(0)[:120] for m in loads.finditer(html)]
        assert not found, f"{page.relative_to(site)} loads from the network: {found}"


@needs_docs
@pytest.mark.skipif(check_site.find_chromium() is None,
                    reason="no system Chromium (Debian/Ubuntu: apt-get install chromium; or set IMIX_CHROMIUM)")
@pytest.mark.slow
def test_every_page_renders_in_chromium(site):
    start = time.perf_counter()
    report = check_site.check_site(site, NOTEBOOKS)
    print(f"{len(report) - 1} pages checked in Chromium in {time.perf_counter() - start:.1f} s")
    assert set(report) >= {f"notebooks/{n}/" for n in NOTEBOOKS} | {"/", "results/", "differences/"}
    failures = {page: problems for page, problems in report.items() if problems}
    assert not failures, "\n".join(f"{page}: {'; '.join(problems)}" for page, problems in failures.items())



@needs_docs
def test_the_landing_page_shows_the_regime_figure_once_the_grid_has_drawn_it(tmp_path, monkeypatch):
    import hooks

    monkeypatch.setattr(hooks, "REGIME", tmp_path)
    assert "results/cpu/results.png" in hooks._headline_figure("index.md")
    (tmp_path / "regime_data.png").write_bytes(b"")
    assert "results/regime/regime_data.png" in hooks._headline_figure("index.md")


def test_the_results_page_holds_the_readmes_regime_block_as_github_reads_it():
    """docs/results.md carries the block itself (GitHub shows no site include), with its links made relative
    to docs/: the README's block with results/ -> ../results/."""
    def block(text):
        return text[text.index("<!-- regime-results:start -->"):text.index("<!-- regime-results:end -->")]

    readme, page = block(README), block((ROOT / "docs" / "results.md").read_text(encoding="utf-8"))
    own_page = "; the notebooks' own runs and other results: [docs/results.md](docs/results.md))"
    expected = readme.replace("](results/", "](../results/").replace(own_page, "; the notebooks' own runs: below)")
    assert page == expected, "copy README's regime block into docs/results.md (links from docs/ start ../)"
