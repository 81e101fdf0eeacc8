"""`imix-teach grade` on real submissions made from notebook 01 (the fastest with an exercise):
solved with the reference solution, untouched, raising, looping forever, redefining its checker, and
a file that is not JSON. Plus the catalogue against the notebooks, and the in-kernel probe in-process.
"""
import copy
import csv
import hashlib
import io
import json
import re
import sys
import contextlib
from pathlib import Path

import nbformat
import pytest

from imix_teach.cli import main
from imix_teach.course import exercises
from imix_teach.course.exercises import nb01
from imix_teach.course.grading import EXERCISES, discover, grade
from imix_teach.course.grading.probe import MARKER, report

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "01_mixup_supervised"
UNSOLVED = ("[ ] mixup_batch: not solved yet (your function returns None). Write its body in place of `return None` "
            "and run the cell again.")


def _stub_cell(nb, function: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and f"def {function}(" in c.source)


def solved(nb, notebook: str):
    """The notebook with each exercise's stub replaced by an import of the reference solution."""
    nb = copy.deepcopy(nb)
    for e in EXERCISES[notebook]:
        cell = nb.cells[_stub_cell(nb, e.function)]
        module, _, solution = e.solution.partition(".")
        cell.source, n = re.subn(rf"def {e.function}\(.*?return None\n",
                                 f"from imix_teach.course.exercises.{module} import {solution} as {e.function}\n",
                                 cell.source, flags=re.S)
        assert n == 1, f"{notebook}: the stub of {e.function} is not where the test expects it"
    return nb


def inserted(nb, index: int, source: str):
    nb = copy.deepcopy(nb)
    nb.cells.insert(index, nbformat.v4.new_code_cell(source))
    return nb


@pytest.fixture(scope="module")
def notebook():
    return nbformat.read(ROOT / "notebooks" / f"{NOTEBOOK}.ipynb", as_version=4)


def _read(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_grade_a_class_of_real_submissions(tmp_path, notebook):
    subs = tmp_path / "submissions"
    (subs / "ben").mkdir(parents=True)  # both layouts: a folder per student and student__notebook files
    nbformat.write(solved(notebook, NOTEBOOK), subs / f"ada__{NOTEBOOK}.ipynb")
    nbformat.write(notebook, subs / "ben" / f"{NOTEBOOK}.ipynb")
    nbformat.write(inserted(notebook, 3, "1 / 0"), subs / f"cy__{NOTEBOOK}.ipynb")
    cheat = "def check_mixup_batch(f):\n    print('[ok] all good')\n    return True\n\ncheck_mixup_batch(mixup_batch)"
    nbformat.write(inserted(notebook, _stub_cell(notebook, "mixup_batch") + 1, cheat), subs / f"eve__{NOTEBOOK}.ipynb")
    (subs / f"fay__{NOTEBOOK}.ipynb").write_text('{"cells": [')
    digests = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in subs.rglob("*.ipynb")}
    out, summary = tmp_path / "grades.csv", tmp_path / "summary.csv"
    assert main(["grade", str(subs), "--out", str(out), "--summary", str(summary), "--timeout", "120"]) == 0
    rows = [(r["student"], r["notebook"], r["exercise"], r["solved"], r["message"]) for r in _read(out)]
    assert rows == [
        ("ada", NOTEBOOK, "mixup_batch", "true", "[ok] mixed inputs: all 4 cases pass. | [ok] mixed labels: all 4 cases pass."),
        ("ben", NOTEBOOK, "mixup_batch", "false", UNSOLVED),
        ("cy", NOTEBOOK, "mixup_batch", "false", "not checked: the notebook raised ZeroDivisionError: division by zero "
                                                 "in cell 4 of 32 (`1 / 0`), before defining `mixup_batch`"),
        ("eve", NOTEBOOK, "mixup_batch", "false", "checker edited: `check_mixup_batch` is redefined in the notebook; "
                                                  "graded with the library's checker: " + UNSOLVED),
        ("fay", NOTEBOOK, "mixup_batch", "false", f"not checked: fay__{NOTEBOOK}.ipynb is not a readable notebook "
                                                  "(NotJSONError: Notebook does not appear to be JSON: '{\"cells\": [')"),
    ]
    assert _read(summary) == [dict(notebook=NOTEBOOK, exercise="mixup_batch", students="5", submitted="5", solved="1",
                                   share_solved="0.20", not_checked="2", checker_edited="1")]
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in subs.rglob("*.ipynb")} == digests


@pytest.mark.slow
def test_a_notebook_that_loops_forever_is_stopped_at_its_time_limit(tmp_path, notebook):
    nbformat.write(inserted(notebook, 1, "while True: pass"), tmp_path / f"dee__{NOTEBOOK}.ipynb")
    nbformat.write(notebook, tmp_path / f"dee__02_virtual_labels.ipynb")  # not graded: --notebooks 01
    rows = grade(tmp_path, tmp_path / "out" / "grades.csv", timeout=3, notebooks=["01"], progress=False)
    assert [(r.student, r.exercise, r.solved, r.message) for r in rows] == [
        ("dee", "mixup_batch", False, "not checked: ran past the 3 s limit in cell 2 of 32 (`while True: pass`); "
                                      "its kernel was stopped")]


def test_a_student_missing_a_notebook_gets_not_submitted_rows(tmp_path, monkeypatch):
    from imix_teach.course import grading
    from imix_teach.course.grading import run

    for name in (f"ada__{NOTEBOOK}", "ada__10_playground", "ben__10_playground"):
        (tmp_path / f"{name}.ipynb").write_text("{}")
    monkeypatch.setattr(grading, "grade_one", lambda sub, **kw: [run.Row(sub.student, sub.notebook, e.id, True, "ok")
                                                                  for e in EXERCISES[sub.notebook]])
    rows = grading.grade(tmp_path, tmp_path / "g.csv", progress=False)
    assert [(r.student, r.notebook, r.message) for r in rows] == [
        ("ada", NOTEBOOK, "ok"), ("ada", "10_playground", "ok"),
        ("ben", NOTEBOOK, "not submitted"), ("ben", "10_playground", "ok")]


def test_submissions_are_found_in_both_layouts_and_bad_names_are_named(tmp_path):
    (tmp_path / "jane" / ".ipynb_checkpoints").mkdir(parents=True)
    (tmp_path / "jane" / "03_imix_npair (1).ipynb").write_text("{}")
    (tmp_path / "jane" / ".ipynb_checkpoints" / "03_imix_npair-checkpoint.ipynb").write_text("{}")
    (tmp_path / "jane" / "00_start_here.ipynb").write_text("{}")  # no exercise: not graded
    (tmp_path / "raj__10_playground.ipynb").write_text("{}")
    assert [(s.student, s.notebook) for s in discover(tmp_path)] == [("jane", "03_imix_npair"), ("raj", "10_playground")]
    assert [s.student for s in discover(tmp_path, ["10"])] == ["raj"]
    with pytest.raises(ValueError, match="--notebooks: '42' names no notebook"):
        discover(tmp_path, ["42"])
    (tmp_path / "loose.ipynb").write_text("{}")
    with pytest.raises(ValueError, match=r"<student>__<notebook>\.ipynb"):
        discover(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover(tmp_path / "nowhere")


def test_the_catalogue_names_every_checker_the_notebooks_call():
    called = {}
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            # A graded exercise is a stub that returns None, checked in the same cell.
            if cell.cell_type == "code" and "return None" in cell.source:
                called.setdefault(path.stem, set()).update(re.findall(r"\b(check_\w+)\(", cell.source))
    listed = {nb: {e.checker.partition(".")[2] for e in ex} for nb, ex in EXERCISES.items()}
    assert called == listed


@pytest.mark.parametrize("exercise", [e for ex in EXERCISES.values() for e in ex], ids=lambda e: e.id)
def test_each_reference_solution_passes_its_checker_and_a_stub_does_not(exercise):
    module = sys.modules.get(exercise.module) or __import__(exercise.module, fromlist=["_"])
    checker = getattr(module, exercise.checker.partition(".")[2])
    with contextlib.redirect_stdout(io.StringIO()):
        assert checker(getattr(module, exercise.solution.partition(".")[2])) is True
        assert checker(lambda *args, **kwargs: None) is False


def _probe(namespace) -> list[dict]:
    out = io.StringIO()
    spec = [dict(id=e.id, function=e.function, checker=e.checker, module=e.module) for e in EXERCISES[NOTEBOOK]]
    with contextlib.redirect_stdout(out):
        report(namespace, spec)
    return json.loads(out.getvalue().strip().removeprefix(MARKER))


def test_the_probe_sees_a_checker_replaced_in_the_library_and_grades_with_the_real_one(monkeypatch):
    monkeypatch.setattr(nb01, "check_mixup_batch", lambda f: True)
    monkeypatch.setattr(exercises, "check_function", lambda *a, **k: True)
    results = _probe({"mixup_batch": lambda *args: None})
    assert results == [dict(exercise="mixup_batch", defined=True, solved=False, message=UNSOLVED, edited=[
        "`imix_teach.course.exercises.check_function` was replaced",
        "`imix_teach.course.exercises.nb01.check_mixup_batch` was replaced"])]
    assert nb01.check_mixup_batch.__module__ == nb01.__name__  # the reload put the library's checker back
    assert _probe({"mixup_batch": nb01.solution_mixup_batch})[0]["solved"] is True


def test_grade_rejects_a_bad_timeout_and_an_empty_folder(tmp_path):
    with pytest.raises(ValueError, match="argument timeout"):
        grade(tmp_path, tmp_path / "g.csv", timeout=0)
    with pytest.raises(FileNotFoundError, match="no submissions found"):
        grade(tmp_path, tmp_path / "g.csv")
