"""Mark every notebook's cells as slides for `jupyter nbconvert --to slides` (reveal.js); metadata only.

    python scripts/mark_slides.py            # write slideshow.slide_type into notebooks/*.ipynb
    python scripts/mark_slides.py --check    # exit 1 when a notebook's marks differ from these rules

The rules, the same every run (sources and outputs are never touched, so nbval still passes):

* the title (`# ...`) and each section (`## ...`) start a new slide, a `###` heading a sub-slide
  (reveal.js puts sub-slides below their slide: the down arrow);
* the install and setup cells at the top are skipped: a lecture has no use for them;
* a code cell that fits under the text before it comes in as a fragment (on the next key press), so the
  explanation is read before the code; a cell that would overflow the slide (BUDGET lines, a figure
  counting FIGURE_LINES) starts a sub-slide of its own.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 22  # lines that fit a 960x700 reveal.js slide at the deck's 20 px font
FIGURE_LINES = 12
WRAP = 90  # characters of a markdown line on a slide
SKIP_STARTS = ("# Installs this course's package", "from imix_teach.course import setup")


def _lines(text: str, wrap: int | None = None) -> int:
    rows = text.rstrip("\n").split("\n") if text.strip() else []
    return sum(max(1, math.ceil(len(r) / wrap)) for r in rows) if wrap else len(rows)


def height(cell: dict) -> int:
    """About how many lines of a slide the cell fills: its source, its text outputs, FIGURE_LINES per figure."""
    source = "".join(cell["source"])
    total = _lines(source, WRAP if cell["cell_type"] == "markdown" else None)
    for output in cell.get("outputs", []):
        data = output.get("data", {})
        if any(k.startswith("image/") for k in data):
            total += FIGURE_LINES
        else:
            total += _lines("".join(output.get("text", data.get("text/plain", ""))))
    return total


def slide_types(nb: dict) -> list[str]:
    """The slide type of each cell: slide, subslide, fragment, skip or '-' (continues the slide)."""
    types, used = [], 0
    for cell in nb["cells"]:
        source = "".join(cell["source"]).lstrip()
        h = height(cell)
        if cell["cell_type"] == "code" and source.startswith(SKIP_STARTS):
            types.append("skip")
            continue
        if cell["cell_type"] == "markdown" and source.startswith(("# ", "## ")):
            kind, used = "slide", h
        elif (cell["cell_type"] == "markdown" and source.startswith("### ")) or used + h > BUDGET:
            kind, used = "subslide", h
        else:
            kind, used = ("fragment" if cell["cell_type"] == "code" else "-"), used + h
        types.append(kind)
    return types


def marked(nb: dict) -> dict:
    """The notebook with each cell's metadata.slideshow.slide_type set by the rules above (a new dict)."""
    nb = json.loads(json.dumps(nb))
    for cell, kind in zip(nb["cells"], slide_types(nb)):
        cell["metadata"]["slideshow"] = {"slide_type": kind}
    return nb


def notebooks() -> list[Path]:
    """The course's notebooks, in order."""
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def main(argv: list[str] | None = None) -> int:
    """Mark (or with --check, only compare) every notebook; print the ones that changed or differ."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook is not marked")
    args = parser.parse_args(argv)
    stale = []
    for path in notebooks():
        text = path.read_text(encoding="utf-8")
        # The byte format nbformat writes (as scripts/sync_notebooks.py keeps it): a rerun changes nothing.
        new = json.dumps(marked(json.loads(text)), indent=1, ensure_ascii=False, sort_keys=True) + "\n"
        if new != text:
            stale.append(path.name)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    verb = "not marked (run python scripts/mark_slides.py)" if args.check else "marked"
    print(f"{verb}: {', '.join(stale)}" if stale else "every notebook's slide marks are up to date")
    return int(bool(stale) and args.check)


if __name__ == "__main__":
    sys.exit(main())
