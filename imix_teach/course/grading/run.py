"""Run one submitted notebook headless and read its exercises' verdicts.

The notebook is read into memory and run from a copy in a temporary folder (the submitted file is
never written), in quick mode (``IMIX_QUICK=1``) and offline (pip may not reach an index and every
download goes to a dead proxy), with one time limit for the whole notebook. Then one cell is
appended that calls :func:`probe.report` in the same kernel. A cell that raises stops the notebook
there, as "Run All" would, and the exercises defined so far are still checked; a notebook past its
time limit has its kernel killed and none is checked.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from .catalogue import EXERCISES, Exercise
from .probe import MARKER
from .submissions import Submission

DEAD_PROXY = "http://127.0.0.1:9"  # nothing listens on the discard port: a download fails at once
PROBE_SECONDS = 60  # the checkers themselves take well under a second each


@dataclass(frozen=True)
class Row:
    """One line of grades.csv."""

    student: str
    notebook: str
    exercise: str
    solved: bool
    message: str


def _env() -> dict[str, str]:
    proxies = {k: DEAD_PROXY for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}
    return {**os.environ, **proxies, "NO_PROXY": "", "no_proxy": "", "IMIX_QUICK": "1", "MPLBACKEND": "Agg",
            "PIP_NO_INDEX": "1", "HF_HUB_OFFLINE": "1"}


def _where(nb: nbformat.NotebookNode, index: int) -> str:
    first = next((line.strip() for line in nb.cells[index].source.splitlines() if line.strip()), "")
    return f"cell {index + 1} of {len(nb.cells)} (`{first[:60]}`)"


def _probe_cell(exercises: tuple[Exercise, ...]) -> nbformat.NotebookNode:
    spec = [dict(id=e.id, function=e.function, checker=e.checker, module=e.module) for e in exercises]
    return nbformat.v4.new_code_cell("from imix_teach.course.grading.probe import report as _imix_report\n"
                                     f"_imix_report(globals(), {json.dumps(spec)})")


def _execute(nb: nbformat.NotebookNode, folder: Path, timeout: float, kernel: str) -> tuple[str, str | None]:
    """Run the notebook's cells, then the probe cell; return (probe's stdout, why the run stopped or None)."""
    client = NotebookClient(nb, kernel_name=kernel, resources={"metadata": {"path": str(folder)}},
                            shutdown_kernel="immediate", record_timing=False)
    client.reset_execution_trackers()
    stopped = None
    # The kernel's own stderr is only its start-up chatter; what the student's code prints comes over iopub.
    with client.setup_kernel(env=_env(), stderr=subprocess.DEVNULL):
        deadline = time.monotonic() + timeout  # from a started kernel: its start-up is not the student's
        for index, cell in enumerate(nb.cells[:-1]):
            client.timeout = max(1, round(deadline - time.monotonic()))
            try:
                client.execute_cell(cell, index)
            except CellTimeoutError:
                return "", f"ran past the {timeout:g} s limit in {_where(nb, index)}; its kernel was stopped"
            except DeadKernelError:
                return "", f"its kernel died in {_where(nb, index)} (out of memory?)"
            except CellExecutionError as err:
                stopped = f"the notebook raised {err.ename}: {err.evalue} in {_where(nb, index)}"
                break
        client.timeout = max(PROBE_SECONDS, round(deadline - time.monotonic()))
        try:
            client.execute_cell(nb.cells[-1], len(nb.cells) - 1)
        except CellTimeoutError:
            return "", f"a checker ran past the {client.timeout} s limit (an endless loop in an exercise?)"
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("name") == "stdout")
    return text, stopped


def _rows(sub: Submission, exercises: tuple[Exercise, ...], probe: str, stopped: str | None) -> list[Row]:
    line = next((ln for ln in probe.splitlines() if ln.startswith(MARKER)), None)
    if line is None:
        why = stopped or "the grader's check cell printed no result"
        return [Row(sub.student, sub.notebook, e.id, False, f"not checked: {why}") for e in exercises]
    rows = []
    for result in json.loads(line[len(MARKER):]):
        if not result["defined"]:
            function = next(e.function for e in exercises if e.id == result["exercise"])
            message = (f"not checked: {stopped}, before defining `{function}`" if stopped
                       else f"not checked: the notebook defines no function `{function}`")
        else:
            message = result["message"] + (f" (note: {stopped}; the cells after it did not run)" if stopped else "")
        if result["edited"]:
            message = (f"checker edited: {'; '.join(result['edited'])}; graded with the library's checker: "
                       + message)
        rows.append(Row(sub.student, sub.notebook, result["exercise"], result["solved"], message))
    return rows


def grade_one(sub: Submission, timeout: float = 300, kernel: str = "python3") -> list[Row]:
    """The rows of one submission: one per exercise of its notebook, whatever the notebook does."""
    exercises = EXERCISES[sub.notebook]
    try:
        nb = nbformat.read(sub.path, as_version=4)
    except Exception as err:  # any unreadable file (not JSON, not a notebook) is that student's row, not a crash
        why = f"not checked: {sub.path.name} is not a readable notebook ({type(err).__name__}: {str(err)[:200]})"
        return [Row(sub.student, sub.notebook, e.id, False, why) for e in exercises]
    nb.cells.append(_probe_cell(exercises))
    with tempfile.TemporaryDirectory(prefix="imix-grade-") as tmp:
        try:
            probe, stopped = _execute(nb, Path(tmp), timeout, kernel)
        except Exception as err:  # the kernel would not start, or nbclient itself failed: this row, not the run
            probe, stopped = "", f"the grader could not run it ({type(err).__name__}: {str(err)[:200]})"
    return _rows(sub, exercises, probe, stopped)
