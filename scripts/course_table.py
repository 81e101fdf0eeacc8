"""The README's course table: its run times come from each notebook's "**Time.**" line.

    python scripts/course_table.py           rewrite the quick / full columns of README.md's course table
    python scripts/course_table.py --check   only report whether they agree (tests/test_site.py runs this)

The "what you learn" column is written by hand in README.md; this script owns only the two time
columns, so a notebook's measured minutes are written in one place: its own Time line.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = "| # | notebook | what you learn | quick run | full run |"
NOT_STATED = "not stated"

_NUMBER = r"\d+(?:\.\d+)?"
_DURATION = rf"(?:about\s+)?({_NUMBER}(?:\s*[-–]\s*{_NUMBER})?)\s*(seconds?|s|minutes?|min)\b"
_ASIDE = r"(?:\s*\([^()]*\))?"  # "quick mode (`IMIX_QUICK=1`) 26 s": a bracketed aside may sit in between


def notebooks(root: Path = ROOT) -> list[Path]:
    """The course's notebooks, in course order (their file names start with the number)."""
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def cells(path: Path) -> list[dict]:
    """The notebook's cells, read as JSON (nothing is executed)."""
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def title(path: Path) -> str:
    """The notebook's first heading, without the leading '#'."""
    for cell in cells(path):
        for line in "".join(cell["source"]).splitlines():
            if cell["cell_type"] == "markdown" and line.startswith("# "):
                return line[2:].strip()
    return path.stem


def short_title(path: Path) -> str:
    """The first heading up to its colon or bracket: '03 · i-Mix on the N-pair loss'."""
    return re.split(r":| \(", title(path), maxsplit=1)[0].strip()


def time_line(path: Path) -> str | None:
    """The paragraph that starts with "**Time.**" in one of the notebook's markdown cells."""
    for cell in cells(path):
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and "**Time.**" in text:
            return text[text.index("**Time.**"):].split("\n\n")[0]
    return None


def run_time(text: str, mode: str) -> str | None:
    """The duration the Time line gives for `mode` ("quick" or "full"), as "10-25 s" or "3.4 min".

    Accepts both word orders the notebooks use: "quick mode (...) took about 10 s" and
    "about 30 s in full mode".
    """
    after = re.search(rf"{mode} mode{_ASIDE}\s*(?:took\s+)?{_DURATION}", text)
    before = re.search(rf"{_DURATION}{_ASIDE}\s+in\s+{mode} mode", text)
    found = min((m for m in (after, before) if m), key=lambda m: m.start(), default=None)
    if found is None:
        return None
    number, unit = found.groups()
    number = re.sub(r"\s*[-–]\s*", "-", number)
    return f"{number} {'s' if unit.startswith('s') else 'min'}"


def times(path: Path) -> tuple[str, str]:
    """(quick, full) run times of one notebook; NOT_STATED where its Time line gives none."""
    text = time_line(path) or ""
    return run_time(text, "quick") or NOT_STATED, run_time(text, "full") or NOT_STATED


def table_span(readme: str) -> tuple[int, int]:
    """Start and end offsets of the course table (header line to its last row) in the README."""
    start = readme.index(HEADER)
    end = start
    for line in readme[start:].splitlines(keepends=True):
        if not line.startswith("|"):
            break
        end += len(line)
    return start, end


def table_rows(readme: str) -> list[list[str]]:
    """The course table's body rows, each a list of its cells."""
    start, end = table_span(readme)
    lines = readme[start:end].splitlines()[2:]
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]


def updated(readme: str, root: Path = ROOT) -> str:
    """The README with the course table's time columns taken from the notebooks' Time lines."""
    by_number = {p.name[:2]: p for p in notebooks(root)}
    rows = table_rows(readme)
    if [r[0] for r in rows] != list(by_number):
        raise ValueError(f"README's course table lists {[r[0] for r in rows]}, notebooks/ holds {list(by_number)}")
    lines = [HEADER, "|---|---|---|---|---|"]
    for number, link, teaches, *_ in rows:
        quick, full = times(by_number[number])
        lines.append(f"| {number} | {link} | {teaches} | {quick} | {full} |")
    start, end = table_span(readme)
    return readme[:start] + "\n".join(lines) + "\n" + readme[end:]


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or with --check, compare) README.md's course table; 1 when --check finds a difference."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report only; exit 1 if the table is stale")
    args = parser.parse_args(argv)
    readme_path = ROOT / "README.md"
    readme = readme_path.read_text(encoding="utf-8")
    new = updated(readme)
    if new == readme:
        print("README's course table agrees with the notebooks' Time lines.")
        return 0
    if args.check:
        print("README's course table disagrees with the notebooks' Time lines: run python scripts/course_table.py")
        return 1
    readme_path.write_text(new, encoding="utf-8")
    print("Rewrote the time columns of README's course table.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
