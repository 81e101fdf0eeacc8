"""Which exercises each notebook holds, and how the grader checks them.

An exercise is a function the student writes in a notebook (``function``), the checker the notebook
calls on it (``checker``, in :mod:`imix_teach.course.exercises`) and the reference solution beside it
(``solution``). The grader calls the very checker the student sees, on the student's function, so a
grade and the notebook's own verdict cannot disagree. tests/test_grading.py checks that this list and
the notebooks' exercise cells name the same checkers.
"""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Exercise:
    """One graded exercise: ``function`` is the student's name for it, ``checker`` and ``solution`` are
    ``"nbXX.name"`` in :mod:`imix_teach.course.exercises`; ``id`` is the checker's name without ``check_``."""

    notebook: str
    function: str
    checker: str
    solution: str

    @property
    def id(self) -> str:
        """The exercise's name in grades.csv, e.g. ``mixup_batch`` for ``nb01.check_mixup_batch``."""
        return self.checker.partition(".check_")[2]

    @property
    def module(self) -> str:
        """The checker's module, e.g. ``imix_teach.course.exercises.nb01``."""
        return "imix_teach.course.exercises." + self.checker.partition(".")[0]


def _exercises(notebook: str, *triples: tuple[str, str, str]) -> tuple[Exercise, ...]:
    return tuple(Exercise(notebook, fn, checker, solution) for fn, checker, solution in triples)


# notebook -> its exercises, in the order the notebook asks for them (00 has no exercise of its own).
EXERCISES: dict[str, tuple[Exercise, ...]] = {ex[0].notebook: ex for ex in (
    _exercises("01_mixup_supervised", ("mixup_batch", "nb01.check_mixup_batch", "nb01.solution_mixup_batch")),
    _exercises("02_virtual_labels", ("npair_logits", "nb02.check_npair_logits", "nb02.solution_npair_logits"),
               ("npair_from_logits", "nb02.check_npair_from_logits", "nb02.solution_npair_from_logits")),
    _exercises("03_imix_npair", ("imix_npair_loss", "nb03.check_imix_npair_loss", "nb03.solution_imix_npair_loss")),
    _exercises("04_imix_moco",
               ("nk_logits_and_targets", "nb04.check_nk_logits_and_targets", "nb04.solution_nk_logits_and_targets"),
               ("ema", "nb04.check_ema", "nb04.solution_ema")),
    _exercises("05_imix_byol", ("byol_loss_soft", "nb05.check_byol_loss", "nb05.solution_byol_loss")),
    _exercises("06_domains", ("mix_any", "nb06.check_mix_any_domain", "nb06.solution_mix_any"),
               ("mask_rows", "nb06.check_masking_noise", "nb06.solution_mask_rows")),
    _exercises("07_no_augmentation",
               ("inputmix_coefficients", "nb07.check_inputmix_coefficients", "nb07.solution_inputmix_coefficients"),
               ("pretext_accuracy", "nb07.check_pretext_accuracy", "nb07.solution_pretext_accuracy")),
    _exercises("08_ablations", ("gain_per_value", "nb08.check_gain_per_value", "nb08.solution_gain_per_value")),
    _exercises("09_transfer_and_beyond",
               ("my_frechet_distance", "nb09.check_frechet_distance", "nb09.solution_frechet_distance"),
               ("my_supervised_targets", "nb09.check_supervised_targets", "nb09.solution_supervised_targets")),
    _exercises("10_playground", ("loss_floor", "nb10.check_loss_floor", "nb10.solution_loss_floor")),
)}


def notebook_for(name: str) -> str | None:
    """The catalogue's notebook that a file or argument names by its number (``03``, ``03_imix_npair``,
    ``jane__03_imix_npair.ipynb`` after the student part is cut), or None when none matches."""
    match = re.match(r"(\d\d)(?:_|\b|$)", name)
    if match is None:
        return None
    return next((nb for nb in EXERCISES if nb.startswith(match.group(1) + "_")), None)
