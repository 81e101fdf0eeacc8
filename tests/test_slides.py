"""Slides: every notebook's cells carry the marks scripts/mark_slides.py gives them (metadata only), and a
deck builds from one notebook with nbconvert, loading nothing from the network. The decks in the built
site are opened in Chromium by tests/test_site.py (scripts/site/check_site.py)."""
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "scripts" / "site")]
import mark_slides  # noqa: E402

TYPES = {"slide", "subslide", "fragment", "skip", "-"}


def test_every_notebook_is_marked_by_the_script():
    assert mark_slides.main(["--check"]) == 0, "run python scripts/mark_slides.py"


@pytest.mark.parametrize("path", mark_slides.notebooks(), ids=lambda p: p.stem)
def test_marks_are_consistent(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    kinds = [c["metadata"]["slideshow"]["slide_type"] for c in nb["cells"]]
    assert set(kinds) <= TYPES
    assert kinds[0] == "slide", "the title opens the deck"
    for cell, kind in zip(nb["cells"], kinds):
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and source.startswith("## "):
            assert kind == "slide", f"{path.name}: a section heading must start a slide: {source[:60]!r}"
        if "from imix_teach.course import setup" in source and cell["cell_type"] == "code":
            assert kind == "skip"
    assert sum(k in ("slide", "subslide") for k in kinds) >= 5, f"{path.name}: a deck of fewer than five slides"


def test_marking_changes_only_metadata():
    for path in mark_slides.notebooks():
        nb = json.loads(path.read_text(encoding="utf-8"))
        again = mark_slides.marked(nb)
        strip = lambda n: [{k: v for k, v in c.items() if k != "metadata"} for c in n["cells"]]  # noqa: E731
        assert strip(again) == strip(nb)


def test_a_long_cell_starts_a_subslide_and_a_short_one_is_a_fragment():
    md = lambda text: {"cell_type": "markdown", "metadata": {}, "source": [text]}  # noqa: E731
    code = lambda n: {"cell_type": "code", "metadata": {}, "outputs": [], "source": ["x = 1\n"] * n}  # noqa: E731
    nb = {"cells": [md("# Title"), md("## One"), code(3), code(mark_slides.BUDGET), md("### Two"), md("text")]}
    assert mark_slides.slide_types(nb) == ["slide", "slide", "fragment", "subslide", "subslide", "-"]


@pytest.mark.skipif(importlib.util.find_spec("nbconvert") is None, reason="nbconvert is not installed")
def test_a_deck_builds_and_loads_nothing_from_the_network():
    import slides

    nb = json.loads((ROOT / "notebooks" / "10_playground.ipynb").read_text(encoding="utf-8"))
    if importlib.util.find_spec("mkdocs"):  # the site's display copy (widgets as pictures), as make site builds it
        import hooks
        nb = hooks.display_copy(nb)
    html = slides.deck(nb)
    kinds = [c["metadata"]["slideshow"]["slide_type"] for c in nb["cells"]]
    assert html.count('class="fragment"') >= 1 and "Reveal.initialize" in html
    assert html.count("<section") >= sum(k in ("slide", "subslide") for k in kinds)
    loads = re.findall(r"""<(?:script|link)\b[^>]*?\b(?:src|href)=["']?([^"' >]+)""", html)
    assert "../assets/reveal.js/dist/reveal.js" in loads
    assert all(not re.match(r"(https?:)?//", url) for url in loads), loads
    assert (slides.REVEAL / "dist" / "reveal.js").exists() and (slides.REVEAL / "LICENSE").exists()
