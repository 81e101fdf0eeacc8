"""A reveal.js slide deck per notebook, beside its page: site/notebooks/NAME.slides.html.

Built by hooks.py after the pages with nbconvert's slides exporter, from the same display copy the
page shows (widgets as their pictures), and the cells' slideshow marks (scripts/mark_slides.py).
nbconvert loads reveal.js, require.js, jQuery and MathJax from CDNs; this site works offline, so the
template in slides_template/ loads reveal.js 4 from the copy in reveal.js/ (MIT, its dist files only;
the theme's web-font import removed, as the site uses system fonts) and MathJax from the site's
assets.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
REVEAL = HERE / "reveal.js"
MATHJAX = "../assets/mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"  # relative to notebooks/


def deck_name(notebook: str) -> str:
    """The deck's file name beside the notebook's page, e.g. ``01_mixup_supervised.slides.html``."""
    return f"{notebook}.slides.html"


def deck(nb: dict) -> str:
    """The notebook (a display copy, as JSON) as one self-contained reveal.js HTML page for notebooks/."""
    import nbformat
    from nbconvert import SlidesExporter

    exporter = SlidesExporter(template_name="imix_reveal", extra_template_basedirs=[str(HERE / "slides_template")],
                              reveal_url_prefix="../assets/reveal.js", reveal_theme="white", mathjax_url=MATHJAX, exclude_input_prompt=True,
                              exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nbformat.reads(json.dumps(nb), as_version=4))  # sources as strings
    return body


def write_decks(site: Path, notebooks: dict[str, dict]) -> None:
    """Write each notebook's deck (name -> display copy) into site/notebooks/ and reveal.js into site/assets/."""
    shutil.copytree(REVEAL, site / "assets" / "reveal.js", dirs_exist_ok=True)
    for name, nb in notebooks.items():
        (site / "notebooks" / deck_name(name)).write_text(deck(nb), encoding="utf-8")
