"""Exercises a student can use: each common wrong answer gets its own hint, solutions pass, and the
committed notebooks keep solutions out of "Run All" and checker cells out of nbval's comparison."""
import ast
import json
import re
from pathlib import Path

import pytest
import torch

from imix_teach.course.exercises import nb03, nb06, nb07, nb09, nb10

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
CHECKERS = [
    (nb03.check_imix_npair_loss, nb03.MISTAKES, nb03.solution_imix_npair_loss),
    (nb06.check_mix_any_domain, nb06.MIX_MISTAKES, nb06.solution_mix_any),
    (nb07.check_pretext_accuracy, nb07.PRETEXT_MISTAKES, nb07.solution_pretext_accuracy),
    (nb07.check_inputmix_coefficients, nb07.COEFFICIENT_MISTAKES, nb07.solution_inputmix_coefficients),
    (nb09.check_supervised_targets, nb09.TARGET_MISTAKES, nb09.solution_supervised_targets),
    (nb09.check_frechet_distance, nb09.FRECHET_MISTAKES, nb09.solution_frechet_distance),
    (nb10.check_loss_floor, nb10.LOSS_FLOOR_MISTAKES, nb10.solution_loss_floor),
]
WRONG = [(check, what, wrong) for check, mistakes, _ in CHECKERS for what, wrong in mistakes.items()]


@pytest.mark.parametrize("check, what, wrong", WRONG, ids=[f"{c.__name__}-{k}" for k, (c, _, _) in enumerate(WRONG)])
def test_each_common_mistake_gets_its_own_hint(check, what, wrong, capsys):
    assert check(wrong) is False
    out = capsys.readouterr().out
    assert out.count("hint:") == 1 and what in out


@pytest.mark.parametrize("check, mistakes, solution", CHECKERS, ids=[c.__name__ for c, _, _ in CHECKERS])
def test_solution_passes_without_a_hint(check, mistakes, solution, capsys):
    assert check(solution) is True
    assert "hint:" not in capsys.readouterr().out


@pytest.mark.parametrize("check", [c for c, _, _ in CHECKERS], ids=[c.__name__ for c, _, _ in CHECKERS])
def test_unfinished_answer_says_what_to_do_and_gives_no_misleading_hint(check, capsys):
    assert check(lambda *args: None) is False
    out = capsys.readouterr().out
    assert "not solved yet" in out and "run the cell again" in out and "hint:" not in out


def test_loss_floor_is_the_entropy_of_the_mixed_label():
    """Closed forms: H(1/2) = log 2, no mixing costs nothing, and E[H(lam)] = 1/2 nat for lam ~ U(0, 1)."""
    import math

    floor = nb10.solution_loss_floor(torch.tensor([0.5, 0.0, 1.0]))
    assert floor.tolist() == pytest.approx([math.log(2), 0.0, 0.0])
    lam = torch.linspace(0, 1, 100_001, dtype=torch.float64)
    assert float(torch.trapezoid(nb10.solution_loss_floor(lam), lam)) == pytest.approx(0.5, abs=1e-6)


def test_masking_noise_names_a_flipped_mask(capsys):
    def keeps_with_p(x, p, generator=None):
        return x.masked_fill(torch.rand(x.shape, generator=generator) >= p, 0.0)

    assert nb06.check_masking_noise(keeps_with_p) is False
    assert "kept entries with probability p" in capsys.readouterr().out


def _code_cells(path):
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_solutions_are_opt_in_and_exercises_unchecked(path):
    for src in _code_cells(path):
        assert "show_solution(" not in src, "solutions are printed only when a student asks (a markdown cell shows how)"
        if re.search(r"YOUR CODE|Your code", src):
            # nbval must not compare a checker's verdict: a solved notebook prints "[ok]" instead of "not solved yet"
            assert "NBVAL_CHECK_OUTPUT" not in src


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_solutions_named_in_markdown_exist(path, capsys):
    from imix_teach.course.exercises import show_solution

    cells = json.loads(path.read_text())["cells"]
    names = re.findall(r'show_solution\("([^"]+)"\)', "".join("".join(c["source"]) for c in cells))
    for name in names:
        show_solution(name)
    assert capsys.readouterr().out.count("def solution_") == len(names)


# Each exercise function of the notebooks and the reference solution that solves it.
SOLUTIONS = {"mixup_batch": "nb01.solution_mixup_batch", "npair_logits": "nb02.solution_npair_logits",
             "npair_from_logits": "nb02.solution_npair_from_logits", "imix_npair_loss": "nb03.solution_imix_npair_loss",
             "nk_logits_and_targets": "nb04.solution_nk_logits_and_targets", "ema": "nb04.solution_ema",
             "byol_loss_soft": "nb05.solution_byol_loss", "mix_any": "nb06.solution_mix_any",
             "mask_rows": "nb06.solution_mask_rows", "inputmix_coefficients": "nb07.solution_inputmix_coefficients",
             "pretext_accuracy": "nb07.solution_pretext_accuracy", "gain_per_value": "nb08.solution_gain_per_value",
             "my_frechet_distance": "nb09.solution_frechet_distance", "my_supervised_targets": "nb09.solution_supervised_targets",
             "loss_floor": "nb10.solution_loss_floor"}
EXERCISE = re.compile(r"def (\w+)\(([^)]*)\):(?:(?!\ndef ).)*?return None", re.S)


def _solve(match: re.Match) -> str:
    module, fn = SOLUTIONS[match.group(1)].split(".")
    args = ", ".join(a.split("=")[0].strip() for a in match.group(2).split(","))
    body = match.group(0).split("return None")[0]
    return f"{body}from imix_teach.course.exercises.{module} import {fn}\n    return {fn}({args})"


def _solved_cells(path: Path) -> tuple[list[dict], list[int]]:
    """The notebook's cells with every exercise function replaced by its reference solution, and the
    indices of the exercise cells."""
    cells, exercises = json.loads(path.read_text())["cells"], []
    for i, cell in enumerate(cells):
        src = "".join(cell["source"])
        if cell["cell_type"] == "code" and re.search(r"YOUR CODE|Your code", src):
            cell["source"] = EXERCISE.sub(_solve, src)
            exercises.append(i)
    return cells, exercises


def _names(src: str, ctx: type) -> set[str]:
    """The names a cell's code binds (ctx=ast.Store) or reads (ast.Load); IPython's %magic and !shell lines left out."""
    code = "\n".join(line for line in src.splitlines() if not line.lstrip().startswith(("%", "!")))
    names = {n.id for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Name) and isinstance(n.ctx, ctx)}
    if ctx is ast.Store:
        names |= {n.name for n in ast.walk(ast.parse(code)) if isinstance(n, ast.FunctionDef)}
        names |= {(a.asname or a.name).split(".")[0] for n in ast.walk(ast.parse(code))
                  if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    return names


def _last_cell_a_solution_reaches(cells: list[dict], exercises: list[int]) -> int | None:
    """The last cell after the first exercise that reads a name an exercise cell binds (the student's function,
    `passed`) or whose output nbval compares (NBVAL_CHECK_OUTPUT); None when there is none."""
    bound = set().union(*(_names("".join(cells[i]["source"]), ast.Store) for i in exercises))
    reached = [i for i, cell in enumerate(cells) if i > exercises[0] and i not in exercises and cell["cell_type"] == "code"
               and (_names("".join(cell["source"]), ast.Load) & bound or "NBVAL_CHECK_OUTPUT" in "".join(cell["source"]))]
    return max(reached, default=None)


SOLVED = {p: _solved_cells(p) for p in NOTEBOOKS}
IN_PROCESS = [p for p, (cells, ex) in SOLVED.items() if ex and _last_cell_a_solution_reaches(cells, ex) is None]


def test_every_exercise_function_is_solved_once():
    solved = [m.group(1) for cells, ex in SOLVED.values() for i in ex for m in re.finditer(r"import (solution_\w+)", "".join(cells[i]["source"]))]
    assert sorted(solved) == sorted(v.split(".")[1] for v in SOLUTIONS.values())


@pytest.mark.parametrize("path", IN_PROCESS, ids=[p.stem for p in IN_PROCESS])
def test_solved_exercise_cells_pass_their_checkers(path, capsys):
    """Where no later cell reads what the exercise cells define and no later output is compared, a solved
    notebook passes nbval if its solved exercise cells run clean: they run here, in order, in one namespace."""
    cells, exercises = SOLVED[path]
    namespace: dict = {}
    for i in exercises:
        exec(compile("".join(cells[i]["source"]), f"{path.name}, cell {i}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "[ok]" in out and "hint:" not in out and "not solved yet" not in out, out


def test_solved_notebooks_pass_nbval(tmp_path):
    """A student who solves every exercise still passes `make test`: where a later cell reads the exercise cells'
    names or has its output compared, the solved copy runs clean under nbval up to the last such cell (the cells
    after it run as in the committed notebook); the other notebooks' exercise cells run in-process above."""
    import os
    import subprocess
    import sys

    from imix_teach.config import quick_mode

    if not quick_mode():
        pytest.skip("runs notebooks: quick mode only (IMIX_QUICK=1, as `make test` sets it)")
    for path, (cells, exercises) in SOLVED.items():
        if path not in IN_PROCESS and exercises:
            nb = json.loads(path.read_text())
            nb["cells"] = cells[:_last_cell_a_solution_reaches(cells, exercises) + 1]
            (tmp_path / path.name).write_text(json.dumps(nb))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in NOTEBOOKS if p not in IN_PROCESS
                                                               and SOLVED[p][1])
    cfg = Path(__file__).parent / "nbval_sanitize.cfg"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    out = subprocess.run([sys.executable, "-m", "pytest", str(tmp_path), "--nbval-lax", "--nbval-sanitize-with", str(cfg),
                          "-p", "no:cacheprovider", "-q"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:]
