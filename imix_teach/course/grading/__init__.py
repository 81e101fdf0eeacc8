"""Grade a class's notebooks in one command: ``imix-teach grade SUBMISSIONS/ --out grades.csv``.

Each submitted notebook runs headless, in quick mode and offline, with a time limit, from a copy
(:mod:`.run`); then the checkers the student sees are called on the student's functions inside the
same kernel (:mod:`.probe`), and their verdicts become one row per student, notebook and exercise
(:mod:`.report`). Which exercises each notebook holds is :data:`.catalogue.EXERCISES`; how the
submissions folder is laid out is :mod:`.submissions`. docs/instructors.md is the guide.

This runs the students' code with the instructor's rights: it is a grader, not a sandbox.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from .catalogue import EXERCISES, Exercise
from .report import summarize, summary_table, write_grades, write_summary
from .run import Row, grade_one
from .submissions import Submission, discover

__all__ = ["EXERCISES", "Exercise", "Row", "Submission", "discover", "grade", "grade_one", "summarize", "summary_table"]


def grade(submissions: str | Path, out: str | Path, *, timeout: float = 300, notebooks: list[str] | None = None,
          summary: str | Path | None = None, kernel: str = "python3", progress: bool = True) -> list[Row]:
    """Grade every submission under ``submissions``; write grades.csv to ``out`` (and the summary to
    ``summary`` if given); return the rows. ``timeout`` is seconds per notebook, from a started kernel.

    A student who submitted some of the graded notebooks but not another gets "not submitted" rows
    for its exercises, so every student has a row for every exercise that anyone was graded on.
    """
    if not timeout > 0:
        raise ValueError(f"argument timeout: expected a positive number of seconds, got {timeout!r}")
    found = discover(submissions, notebooks)
    if not found:
        raise FileNotFoundError(f"no submissions found under {str(submissions)!r}: expected <student>/NN_name.ipynb "
                                f"or <student>__NN_name.ipynb files (docs/instructors.md)")
    rows: list[Row] = []
    for k, sub in enumerate(found, 1):
        tic = time.perf_counter()
        rows += grade_one(sub, timeout=timeout, kernel=kernel)
        if progress:
            print(f"[{k}/{len(found)}] {sub.student} {sub.notebook}: {time.perf_counter() - tic:.0f} s", file=sys.stderr)
    rows += _not_submitted(found)
    rows.sort(key=lambda r: (r.student, r.notebook))  # stable: exercises stay in the notebook's order
    write_grades(rows, out)
    if summary is not None:
        write_summary(summarize(rows), summary)
    return rows


def _not_submitted(found: list[Submission]) -> list[Row]:
    students = sorted({s.student for s in found})
    graded = sorted({s.notebook for s in found})
    have = {(s.student, s.notebook) for s in found}
    return [Row(student, nb, e.id, False, "not submitted") for student in students for nb in graded
            if (student, nb) not in have for e in EXERCISES[nb]]
