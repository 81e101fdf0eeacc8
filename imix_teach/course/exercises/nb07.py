"""Notebook 07 (contrastive learning without augmentation): checkers and reference solutions.

Exercise 1: the pretext task's accuracy. Given the embeddings of two views of the same N samples,
how often is row i's most similar row of the other view row i itself? With identical views a
plain encoder solves this trivially, and that is the problem. :func:`check_pretext_accuracy`
compares with :func:`imix_teach.course.analysis.instance_accuracy`.

Exercise 2: InputMix's coefficients (Sec. 3.3). From Dirichlet(1, 1, 1) draws l (N, 3) build
(0.5 * l1 + 0.5, 0.5 * l2, 0.5 * l3): the principal input keeps at least half of the weight.
:func:`check_inputmix_coefficients` compares with the reference.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..analysis import instance_accuracy
from . import check_with_hints


# ----------------------------------------------------------------------------- exercise 1
def solution_pretext_accuracy(first: torch.Tensor, second: torch.Tensor) -> float:
    """Share of rows i whose most cosine-similar row of ``second`` is row i (a float in [0, 1])."""
    sim = F.normalize(first, dim=1) @ F.normalize(second, dim=1).T  # (N, N) cosine similarities
    return float((sim.argmax(dim=1) == torch.arange(first.shape[0])).float().mean())


def _pretext_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(8)
    cases = []
    for n, d, noise in ((16, 8, 0.0), (32, 4, 1.0), (64, 16, 3.0)):
        a = torch.randn(n, d, generator=g)
        b = 2.5 * a + noise * torch.randn(n, d, generator=g)  # a scaled copy: cosine ignores the scale
        cases.append((a, b))
    return cases


def _top1(sim: torch.Tensor, dim: int = 1) -> float:
    return float((sim.argmax(dim=dim) == torch.arange(sim.shape[0])).float().mean())


# Wrong answers students often give, by what went wrong; each takes the checker's arguments.
PRETEXT_MISTAKES = {
    "the rows were not L2-normalised (a dot product is not a cosine similarity: F.normalize first)":
        lambda a, b: _top1(a @ b.T),
    "the argmax ran over the wrong axis (for each row i of first, look along its row of similarities: dim=1)":
        lambda a, b: _top1(F.normalize(a, dim=1) @ F.normalize(b, dim=1).T, dim=0),
    "you returned a count, not a share (divide by N, or take the mean)":
        lambda a, b: _top1(F.normalize(a, dim=1) @ F.normalize(b, dim=1).T) * a.shape[0],
}


def check_pretext_accuracy(student: Callable[..., float]) -> bool:
    """``student(first, second) -> float`` on identical, noisy and very noisy second views."""
    return check_with_hints("pretext_accuracy", student, instance_accuracy, _pretext_cases(), PRETEXT_MISTAKES,
                            atol=1e-6)


# ----------------------------------------------------------------------------- exercise 2
def solution_inputmix_coefficients(l: torch.Tensor) -> torch.Tensor:
    """(N, 3) Dirichlet(1, 1, 1) draws -> (N, 3) coefficients (0.5 l1 + 0.5, 0.5 l2, 0.5 l3)."""
    return 0.5 * l + torch.tensor([0.5, 0.0, 0.0])


def _dirichlet_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(9)
    cases = []
    for n in (4, 10):
        e = -torch.log(torch.rand(n, 3, generator=g))  # Exp(1) draws; normalised they are Dirichlet(1,1,1)
        cases.append((e / e.sum(1, keepdim=True),))
    return cases


COEFFICIENT_MISTAKES = {
    "the Dirichlet draw was used as it is (halve it: the first input keeps at least 0.5)": lambda l: l,
    "the rows sum to 0.5 (add 0.5 to the first coefficient only)": lambda l: 0.5 * l,
    "0.5 was added to every coefficient (only the first, the input being augmented, gets it)": lambda l: 0.5 * l + 0.5,
    "0.5 went to the last coefficient (the first one belongs to the input being augmented)":
        lambda l: 0.5 * l + torch.tensor([0.0, 0.0, 0.5]),
}


def check_inputmix_coefficients(student: Callable[..., torch.Tensor]) -> bool:
    """``student(l) -> (N, 3)`` coefficients; rows sum to 1 and the first is >= 0.5."""
    return check_with_hints("inputmix_coefficients", student, solution_inputmix_coefficients, _dirichlet_cases(),
                            COEFFICIENT_MISTAKES, atol=1e-6)
