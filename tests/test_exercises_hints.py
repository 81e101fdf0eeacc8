"""Exercises a student can use: each common wrong answer gets its own hint, solutions pass, and the
committed notebooks keep solutions out of "Run All" and checker cells out of nbval's comparison."""
import json
import re
from pathlib import Path

import pytest
import torch

from imix_teach.exercises import nb03, nb06, nb07, nb09, nb10

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
    from imix_teach.exercises import show_solution

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
    return f"{body}from imix_teach.exercises.{module} import {fn}\n    return {fn}({args})"


def test_solved_notebooks_pass_nbval(tmp_path):
    """A student who solves every exercise still passes `make test`: solved copies run clean under nbval."""
    import os
    import subprocess
    import sys

    from imix_teach.config import quick_mode

    if not quick_mode():
        pytest.skip("runs every notebook: quick mode only (IMIX_QUICK=1, as `make test` sets it)")
    solved = 0
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            src = "".join(cell["source"])
            if cell["cell_type"] == "code" and re.search(r"YOUR CODE|Your code", src):
                src, n = EXERCISE.subn(_solve, src)
                cell["source"], solved = src, solved + n
        (tmp_path / path.name).write_text(json.dumps(nb))
    assert solved == len(SOLUTIONS)
    cfg = Path(__file__).parent / "nbval_sanitize.cfg"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    out = subprocess.run([sys.executable, "-m", "pytest", str(tmp_path), "--nbval-lax", "--nbval-sanitize-with", str(cfg),
                          "-p", "no:cacheprovider", "-q"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:]
