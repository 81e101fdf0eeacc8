"""Find a class's submitted notebooks in a folder.

Two layouts, which may be mixed:

* one folder per student: ``SUBMISSIONS/jane/03_imix_npair.ipynb`` (student ``jane``);
* flat files named ``<student>__<notebook>.ipynb``: ``SUBMISSIONS/jane__03_imix_npair.ipynb``
  (two underscores between the student and the notebook).

A notebook is recognised by its two-digit number, so ``03_imix_npair (1).ipynb`` or ``03.ipynb`` count
as notebook 03. Checkpoint folders (``.ipynb_checkpoints``) and hidden files are passed over.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .catalogue import EXERCISES, notebook_for


@dataclass(frozen=True)
class Submission:
    """One student's file for one notebook (``notebook`` is the catalogue's name, e.g. ``03_imix_npair``)."""

    student: str
    notebook: str
    path: Path


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _parse(path: Path, root: Path) -> tuple[str, str | None]:
    """(student, notebook or None) of a file under ``root``, by the two layouts above."""
    relative = path.relative_to(root)
    if len(relative.parts) >= 2:  # one folder per student: the first folder names the student
        return relative.parts[0], notebook_for(path.name)
    student, sep, rest = path.stem.partition("__")
    if not sep or not student:
        raise ValueError(f"submission {path.name!r}: a file directly in the submissions folder must be named "
                         f"<student>__<notebook>.ipynb (e.g. jane__03_imix_npair.ipynb), or put it in a folder "
                         f"named after the student")
    return student, notebook_for(rest)


def discover(root: str | Path, notebooks: list[str] | None = None) -> list[Submission]:
    """Every submission under ``root``, sorted by student then notebook.

    ``notebooks`` keeps only these notebooks (names or numbers: ``03`` or ``03_imix_npair``). A file
    whose name names no graded notebook (00 has no exercise) is skipped; two files of one student for
    the same notebook are an error, since the grader could not tell which one counts.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"submissions folder {str(root)!r} does not exist (pass the folder holding the "
                                f"students' notebooks)")
    wanted = None if notebooks is None else {_wanted(n) for n in notebooks}
    found: dict[tuple[str, str], Submission] = {}
    for path in sorted(root.rglob("*.ipynb")):
        if _hidden(path, root):
            continue
        student, notebook = _parse(path, root)
        if notebook is None or (wanted is not None and notebook not in wanted):
            continue
        if (student, notebook) in found:
            raise ValueError(f"student {student!r} has two files for notebook {notebook}: "
                             f"{found[student, notebook].path} and {path}; keep one")
        found[student, notebook] = Submission(student, notebook, path)
    return [found[key] for key in sorted(found)]


def _wanted(name: str) -> str:
    notebook = notebook_for(name)
    if notebook is None:
        raise ValueError(f"argument --notebooks: {name!r} names no notebook with exercises; choose from "
                         f"{', '.join(EXERCISES)} (or their numbers, e.g. 03)")
    return notebook
