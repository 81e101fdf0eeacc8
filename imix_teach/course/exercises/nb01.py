"""Notebook 01 (MixUp for supervised learning): the exercise.

Exercise: :func:`check_mixup_batch` (checker) and :func:`solution_mixup_batch` (reference). The
supervised training loop and calibration tools the notebook uses are in :mod:`imix_teach.supervised`.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ...mixing import mix_targets, mixup
from . import check_function, not_solved


# ----------------------------------------------------------------------------- the exercise
def solution_mixup_batch(x: torch.Tensor, y: torch.Tensor, lam: float | torch.Tensor,
                         perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MixUp of a batch (Sec. 3.1): x (N, ...) inputs, y (N, C) one-hot rows, lam a float or (N,).

    Returns (lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm]).
    """
    lam = torch.as_tensor(lam, dtype=x.dtype)
    if lam.dim() == 1:  # one lam per sample: give it trailing singleton dims so it scales whole samples
        lam_x = lam.view(-1, *([1] * (x.dim() - 1)))
        lam_y = lam.view(-1, 1)
    else:
        lam_x = lam_y = lam
    x_mixed = lam_x * x + (1 - lam_x) * x[perm]
    y_mixed = lam_y * y + (1 - lam_y) * y[perm]
    return x_mixed, y_mixed


def _mixup_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(1)
    images = torch.rand(6, 1, 4, 4, generator=g)
    labels = F.one_hot(torch.tensor([0, 1, 2, 1, 0, 2]), 3).float()
    perm = torch.randperm(6, generator=g)
    per_sample = torch.rand(6, generator=g)
    table = torch.randn(5, 7, generator=g)
    table_labels = F.one_hot(torch.tensor([3, 0, 1, 3, 2]), 4).float()
    return [
        (images, labels, 0.7, perm),  # one lam for the batch (the paper's choice)
        (images, labels, per_sample, perm),  # one lam per sample (the authors' code)
        (table, table_labels, 0.25, torch.randperm(5, generator=g)),  # not only images
        (images, labels, 1.0, perm),  # lam = 1: nothing is mixed
    ]


def check_mixup_batch(student: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> bool:
    """Compare ``student(x, y, lam, perm) -> (x_mixed, y_mixed)`` with the library's mixup/mix_targets."""

    def first(*case):
        out = student(*case)
        return None if out is None else out[0]

    def second(*case):
        out = student(*case)
        return None if out is None else out[1]

    cases = _mixup_cases()
    probe = student(*cases[0])
    if probe is None:
        return not_solved("mixup_batch")
    if not (isinstance(probe, tuple) and len(probe) == 2):
        print("[x] mixup_batch: return a pair (x_mixed, y_mixed).")
        return False
    ok_x = check_function("mixed inputs", first, lambda x, y, lam, perm: mixup(x, lam, perm), cases,
                          hint="Inputs: lam * x + (1 - lam) * x[perm]; a per-sample lam needs shape (N, 1, ...).")
    ok_y = ok_x and check_function("mixed labels", second, lambda x, y, lam, perm: mix_targets(y, lam, perm), cases,
                                   hint="Labels are mixed with the same lam and the same perm as the inputs.")
    return ok_x and ok_y
