"""Open every page of a built course site in headless Chromium and report what is wrong with each.

    python scripts/site/check_site.py site                          # check site/ (after `make site`)
    python scripts/site/check_site.py site --screenshots docs/screenshots

Each notebook's slide deck (notebooks/NAME.slides.html) is opened too, and must start reveal.js.
A page passes when it logs no console error, loads nothing from outside the site, has every image
loaded, and has every formula typeset by MathJax (no raw `$...$` or `\\(...\\)` left in its text).
The site passes when, besides, every page's navigation lists every notebook in course order and the
footer's "next" links lead from the landing page through every notebook in that order. tests/test_site.py runs this.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Playwright is imported only when a check runs
    from playwright.sync_api import Page

# As root in a container Chromium needs --no-sandbox; the other flags stop its background calls to
# Google's services, which fail (and log errors) on a machine without internet.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Text a reader sees that still looks like TeX: MathJax left it untypeset. Code is skipped.
RAW_MATH_JS = r"""() => {
  const skip = "PRE, CODE, SCRIPT, STYLE, TEXTAREA, .MathJax, .MathJax_Preview, .MathJax_Display";
  const walker = document.createTreeWalker(document.querySelector("article") || document.body, NodeFilter.SHOW_TEXT);
  const found = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.parentElement.closest(skip)) continue;
    const m = node.textContent.match(/\$[^$\s][^$]*\$|\\\(|\\\[|\$\$/);
    if (m) found.push(node.textContent.trim().slice(0, 80));
  }
  const errors = [...document.querySelectorAll(".MathJax_Error, merror, [data-mjx-error]")].map(e => e.textContent);
  return {raw: found, errors: errors, typeset: document.querySelectorAll(".MathJax, mjx-container").length};
}"""
BROKEN_IMAGES_JS = """() => [...document.images].filter(i => !(i.complete && i.naturalWidth > 0))
                           .map(i => (i.getAttribute('src') || '').slice(0, 80))"""
MATHJAX_DONE_JS = """() => new Promise(done => (window.MathJax && MathJax.Hub) ? MathJax.Hub.Queue(() => done(true)) : done(false))"""


def find_chromium() -> str | None:
    """The system's Chromium (or Chrome): $IMIX_CHROMIUM, else the first of CANDIDATES on PATH."""
    if os.environ.get("IMIX_CHROMIUM"):
        return os.environ["IMIX_CHROMIUM"]
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve `folder` on a free localhost port for the duration of the block; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


def pages(site: Path) -> list[str]:
    """Every page of the site, as a URL path relative to its root ('' for the landing page)."""
    found = [p.parent.relative_to(site).as_posix() for p in site.rglob("index.html")]
    return sorted("" if p == "." else p + "/" for p in found)


def check_page(page: Page, url: str, base: str) -> list[str]:
    """Load one page in an open Playwright page; the problems found on it (empty when it passes)."""
    problems: list[str] = []
    page.on("console", lambda m: m.type == "error" and problems.append(f"console error: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"script error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed to load {r.url}: {r.failure}"))
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base)
               else (problems.append(f"requests outside the site: {route.request.url}"), route.abort()))
    response = page.goto(url, wait_until="load")
    if response is None or not response.ok:
        return [f"HTTP {response.status if response else 'no response'}"]
    if not page.evaluate(MATHJAX_DONE_JS):
        problems.append("MathJax did not load")
    math = page.evaluate(RAW_MATH_JS)
    problems += [f"raw math left: {text!r}" for text in math["raw"]]
    problems += [f"MathJax error: {text!r}" for text in math["errors"]]
    problems += [f"image did not load: {src}" for src in page.evaluate(BROKEN_IMAGES_JS)]
    return problems


REVEAL_JS = "() => (window.Reveal && Reveal.isReady()) ? Reveal.getTotalSlides() : 0"


def check_deck(page: Page, url: str, base: str) -> list[str]:
    """Load a notebook's slide deck: the page checks of check_page, and reveal.js started with slides."""
    problems = check_page(page, url, base)
    page.wait_for_function("() => window.Reveal && Reveal.isReady()", timeout=10_000)
    if page.evaluate(REVEAL_JS) < 2:
        problems.append("reveal.js shows fewer than two slides")
    return problems


def nav_notebooks(page: Page) -> list[str]:
    """The notebook pages the open page's navigation lists, in its order (as file names)."""
    hrefs = page.eval_on_selector_all("nav.md-nav--primary a.md-nav__link[href]", "els => els.map(e => e.href)")
    names = [h.rstrip("/").rsplit("/", 1)[-1] for h in hrefs if "/notebooks/" in h and "#" not in h]
    return list(dict.fromkeys(names))


def next_link(page: Page, base: str) -> str | None:
    """Where the open page's footer "next" link leads (a URL path relative to the site), if it has one."""
    link = page.query_selector("a.md-footer__link--next")
    return link.evaluate("e => e.href")[len(base):] if link else None


def chain(nexts: dict[str, str | None], start: str = "") -> list[str]:
    """The pages the "next" links lead through from `start`, each once."""
    visited = [start]
    while (step := nexts.get(visited[-1])) is not None and step not in visited:
        visited.append(step)
    return visited


def notebook_links(page: Page, site: Path, name: str) -> list[str]:
    """Problems with an open notebook page's "Open in Colab" and "Download notebook" links."""
    problems = []
    colab = page.get_attribute("a:has-text('Open in Colab')", "href") or ""
    if not colab.startswith("https://colab.research.google.com/github/") or not colab.endswith(f"/notebooks/{name}.ipynb"):
        problems.append(f"Colab link {colab!r}")
    download = page.get_attribute("a:has-text('Download notebook')", "href") or ""
    target = (site / "notebooks" / name).joinpath(download).resolve()
    if target != (site / "notebooks" / f"{name}.ipynb").resolve() or not target.exists():
        problems.append(f"download link {download!r} does not lead to notebooks/{name}.ipynb")
    deck = page.get_attribute("a:has-text('Slides')", "href") or ""
    if (site / "notebooks" / name).joinpath(deck).resolve() != (site / "notebooks" / f"{name}.slides.html").resolve():
        problems.append(f"slides link {deck!r} does not lead to notebooks/{name}.slides.html")
    return problems


def check_site(site: Path, notebooks: list[str], screenshots: Path | None = None) -> dict[str, list[str]]:
    """Check every page of the built `site`; {page: problems} ('site' for site-wide ones), all empty on a pass.

    notebooks: the notebooks' names (no suffix) in course order, as notebooks/ holds them.
    """
    from playwright.sync_api import sync_playwright

    report: dict[str, list[str]] = {}
    with serve(site) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=find_chromium(), args=FLAGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        nexts: dict[str, str | None] = {}
        for path in pages(site):
            page = context.new_page()
            report[path or "/"] = check_page(page, base + path, base)
            nav = nav_notebooks(page)
            if nav != notebooks:
                report[path or "/"].append(f"navigation lists {nav}, notebooks/ holds {notebooks}")
            if path.startswith("notebooks/"):
                report[path] += notebook_links(page, site, path.strip("/").split("/")[-1])
            nexts[path] = next_link(page, base)
            page.close()
        for name in notebooks:
            page = context.new_page()
            report[f"notebooks/{name}.slides.html"] = check_deck(page, f"{base}notebooks/{name}.slides.html", base)
            page.close()
        reached = [p.strip("/").split("/")[-1] for p in chain(nexts) if p.startswith("notebooks/")]
        report["site"] = [] if reached == notebooks else [f"'next' links lead through {reached}, not {notebooks}"]
        if screenshots is not None:
            save_screenshots(context.new_page(), base, notebooks, screenshots)
        browser.close()
    return report


def save_screenshots(page: Page, base: str, notebooks: list[str], folder: Path) -> None:
    """landing.png (the top of the landing page) and notebook.png (notebook 01 at its second section,
    where math, code and a figure meet; the first notebook if there is no 01)."""
    folder.mkdir(parents=True, exist_ok=True)
    page.goto(base, wait_until="load")
    page.evaluate(MATHJAX_DONE_JS)
    page.screenshot(path=str(folder / "landing.png"))
    name = next((n for n in notebooks if n.startswith("01_")), notebooks[0])
    page.goto(f"{base}notebooks/{name}/", wait_until="load")
    page.evaluate(MATHJAX_DONE_JS)
    # the heading just below the sticky header bar (64 px)
    page.evaluate("() => { const h = document.querySelectorAll('article h2'); (h[1] || h[0]).scrollIntoView(); window.scrollBy(0, -64); }")
    page.wait_for_timeout(1000)  # Material's header swaps the site name for the page title with a fade
    page.screenshot(path=str(folder / "notebook.png"))


def main(argv: list[str] | None = None) -> int:
    """Check a built site; print each page's verdict; 1 when any page has a problem."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path, help="the built site (make site writes site/)")
    parser.add_argument("--screenshots", type=Path, help="also save landing.png and notebook.png here")
    args = parser.parse_args(argv)
    if find_chromium() is None:
        print("No Chromium found: install it (Debian/Ubuntu: apt-get install chromium) or set IMIX_CHROMIUM.")
        return 2
    root = Path(__file__).resolve().parents[2]
    notebooks = [p.stem for p in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))]
    report = check_site(args.site, notebooks, args.screenshots)
    for page, problems in report.items():
        print(f"{'ok  ' if not problems else 'FAIL'} {page}" + "".join(f"\n       {p}" for p in problems))
    print(f"{sum(not p for p in report.values())} passed, {sum(bool(p) for p in report.values())} failed")
    return int(any(report.values()))


if __name__ == "__main__":
    sys.exit(main())
