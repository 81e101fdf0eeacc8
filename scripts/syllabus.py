"""The syllabus's generated part (docs/syllabus.md): the eleven notebooks as six 90-minute sessions.

    python scripts/syllabus.py           # rewrite the block between the syllabus markers
    python scripts/syllabus.py --check   # exit 1 when the page no longer matches the notebooks

Titles, objectives, reading and run times come from each notebook's own text (its heading, its
**Objectives.** paragraph and its **Time.** line, read as scripts/course_table.py reads them for the
README), the exercises from the grader's catalogue, so the page cannot drift from the notebooks.
Only the grouping into sessions, the paper's sections to read and what to assign are written here.
tests/test_syllabus.py checks the page.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]
import course_table  # noqa: E402
from imix_teach.course.grading.catalogue import EXERCISES  # noqa: E402

PAGE = ROOT / "docs" / "syllabus.md"
START, END = "<!-- syllabus:start -->", "<!-- syllabus:end -->"
# session -> (notebook numbers, the paper's sections to read before it, what to assign after it)
SESSIONS = (
    (("00", "01"), "Sec. 1 and 3.1 (MixUp, Eq. 1-2)", "notebook 01's exercise; run section 5 in full mode at home"),
    (("02", "03"), "Sec. 2, 3.1 and Algorithm 1; Appendix B", "the exercises of 02 and 03"),
    (("04", "05"), "Sec. 3.2 (MoCo, Eq. 8; BYOL, Eq. 11-12)", "the exercises of 04 and 05"),
    (("06", "07"), "Sec. 3.3, 4.1-4.2 and Table 3 (domains, no augmentation, InputMix)", "the exercises of 06 and 07"),
    (("08",), "Sec. 4.3-4.4, Fig. 1-2, Table C.1 (ablations)", "notebook 08's exercise; a one-page reading of one ablation"),
    (("09", "10"), "Sec. 4.5, Appendix A.2 and C (transfer, supervised, regularisation)",
     "the exercises of 09 and 10; a short report comparing two settings in the playground over seeds"),
)


def reading_minutes(path: Path) -> int:
    """The minutes of reading (and exercises) that the notebook's Time line states."""
    match = re.search(r"About (\d+) minutes", course_table.time_line(path) or "")
    if match is None:
        raise ValueError(f"{path.name}: its **Time.** line states no 'About N minutes of reading'")
    return int(match.group(1))


def objectives(path: Path) -> str:
    """The notebook's **Objectives.** paragraph on one line, without the label."""
    for cell in course_table.cells(path):
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and "**Objectives.**" in text:
            text = text[text.index("**Objectives.**") + len("**Objectives.**"):]
            text = re.split(r"\*\*(?:Time|Prerequisites|Assumes)", text)[0]
            return " ".join(text.split())
    return ""


def _notebook(number: str) -> Path:
    return next(p for p in course_table.notebooks() if p.name.startswith(number + "_"))


def _exercises(path: Path) -> str:
    return ", ".join(f"`{e.function}`" for e in EXERCISES.get(path.stem, ())) or "none (a tour and a setup check)"


def block() -> str:
    """The generated Markdown: a table of the sessions, then each session's notebooks in detail."""
    rows = ["| session | notebooks | reading and exercises | quick run | full run |", "|---|---|---|---|---|"]
    parts = []
    for k, (numbers, paper, assign) in enumerate(SESSIONS, 1):
        paths = [_notebook(n) for n in numbers]
        times = [course_table.times(p) for p in paths]
        minutes = [reading_minutes(p) for p in paths]
        total = f"{' + '.join(map(str, minutes))} = {sum(minutes)}" if len(minutes) > 1 else str(minutes[0])
        rows.append(f"| {k} | {', '.join(numbers)} | {total} min | "
                    f"{' + '.join(t[0] for t in times)} | {' + '.join(t[1] for t in times)} |")
        lines = [f"### Session {k}: {' and '.join(course_table.short_title(p) for p in paths)}", "",
                 f"**Read before:** the paper, {paper}.", ""]
        for path, (quick, full), m in zip(paths, times, minutes):
            lines += [f"- **[{course_table.title(path)}](notebooks/{path.name})**: {m} min of reading and exercises; "
                      f"runs in {quick} (quick mode) or {full} (full mode).",
                      f"    - *Objectives:* {objectives(path)}", f"    - *Exercises:* {_exercises(path)}"]
        lines += ["", f"**Assign:** {assign}."]
        parts.append("\n".join(lines))
    return "\n".join([START, "\n".join(rows), "", "\n\n".join(parts), END])


def updated(page: str) -> str:
    """The page with its generated block replaced by :func:`block`."""
    if START not in page or END not in page:
        raise ValueError(f"{PAGE.name}: no {START} ... {END} block to fill")
    head, rest = page.split(START, 1)
    return head + block() + rest.split(END, 1)[1]


def main(argv: list[str] | None = None) -> int:
    """Rewrite docs/syllabus.md's block, or with --check report whether it is stale."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if the page is stale")
    args = parser.parse_args(argv)
    page = PAGE.read_text(encoding="utf-8")
    new = updated(page)
    if new == page:
        print("docs/syllabus.md is up to date")
        return 0
    if args.check:
        print("docs/syllabus.md is stale: run python scripts/syllabus.py")
        return 1
    PAGE.write_text(new, encoding="utf-8")
    print("updated docs/syllabus.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
