"""Notebook 10 (playground): the floor under an i-Mix loss.

Exercise: the cross-entropy against a soft target v is H(v) + KL(v || p) >= H(v), so an i-Mix
anchor whose target is lam * e_i + (1 - lam) * e_j can never push its loss below the entropy
H(lam) = -lam log lam - (1 - lam) log(1 - lam). :func:`check_loss_floor` compares a student's
``loss_floor(lam)`` with :func:`solution_loss_floor` and names the common mistakes.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from . import check_with_hints


def solution_loss_floor(lam: torch.Tensor) -> torch.Tensor:
    """H(lam) in nats, elementwise, for lam in [0, 1]: the smallest cross-entropy a target
    lam * e_i + (1 - lam) * e_j allows (0 * log 0 counts as 0, so lam = 0 or 1 gives 0)."""
    return -(torch.xlogy(lam, lam) + torch.xlogy(1 - lam, 1 - lam))


def _cases() -> list[tuple[torch.Tensor]]:
    g = torch.Generator().manual_seed(10)
    return [
        (torch.tensor([0.5]),),  # the largest floor: log 2
        (torch.rand(16, generator=g),),
        (torch.tensor([0.0, 0.25, 1.0]),),  # no mixing at the ends: floor 0
    ]


LOSS_FLOOR_MISTAKES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "the logarithm is base 2 (the cross-entropy uses the natural log)":
        lambda lam: solution_loss_floor(lam) / math.log(2),
    "only the lam share is counted (the partner's 1 - lam is part of the target too)":
        lambda lam: -torch.xlogy(lam, lam),
    "the sign is flipped (an entropy is never negative)":
        lambda lam: -solution_loss_floor(lam),
}


def check_loss_floor(student: Callable[[torch.Tensor], torch.Tensor]) -> bool:
    """``student(lam) -> H(lam)`` elementwise for lam of shape (N,), compared with the reference."""
    return check_with_hints("loss_floor", student, solution_loss_floor, _cases(), LOSS_FLOOR_MISTAKES,
                            hint="H(lam) = -lam log(lam) - (1 - lam) log(1 - lam); 0 log 0 counts as 0 "
                                 "(torch.xlogy(x, x) gives it).")
