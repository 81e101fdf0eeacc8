"""grades.csv (one row per student, notebook and exercise) and the summary per exercise."""
from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from .run import Row

GRADE_COLUMNS = ("student", "notebook", "exercise", "solved", "message")
SUMMARY_COLUMNS = ("notebook", "exercise", "students", "submitted", "solved", "share_solved", "not_checked", "checker_edited")


def write_grades(rows: Iterable[Row], path: str | Path) -> None:
    """Write grades.csv; ``solved`` as ``true``/``false``, so a spreadsheet or pandas reads it as a boolean."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(GRADE_COLUMNS)
        for r in rows:
            writer.writerow([r.student, r.notebook, r.exercise, "true" if r.solved else "false", r.message])


def summarize(rows: list[Row]) -> list[dict[str, object]]:
    """Per exercise: students graded, submissions, how many solved it (and the share of students), how many could not be checked
    (the notebook raised before defining it, timed out, was unreadable) and how many edited a checker."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        groups.setdefault((r.notebook, r.exercise), []).append(r)
    summary = []
    for (notebook, exercise), group in sorted(groups.items()):
        solved = sum(r.solved for r in group)
        summary.append(dict(notebook=notebook, exercise=exercise, students=len(group),
                            submitted=sum(r.message != "not submitted" for r in group), solved=solved,
                            share_solved=f"{solved / len(group):.2f}",
                            not_checked=sum("not checked:" in r.message for r in group),
                            checker_edited=sum(r.message.startswith("checker edited:") for r in group)))
    return summary


def write_summary(summary: list[dict[str, object]], path: str | Path) -> None:
    """Write the summary per exercise as CSV (columns SUMMARY_COLUMNS)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(summary)


def summary_table(summary: list[dict[str, object]]) -> str:
    """The summary as a fixed-width text table, for the terminal."""
    header = ("notebook", "exercise", "solved", "not checked", "checker edited")
    body = [(s["notebook"], s["exercise"], f"{s['solved']}/{s['students']}", str(s["not_checked"]),
             str(s["checker_edited"])) for s in summary]
    widths = [max(len(row[k]) for row in [header, *body]) for k in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *body])
