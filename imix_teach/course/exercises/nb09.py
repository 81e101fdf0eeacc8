"""Notebook 09 (transfer, supervised contrastive, regularisation evidence): checkers and solutions.

Exercise 1: supervised-contrastive virtual labels (Appendix A.2): v_ij = 1 where labels i and j
match, each row normalised to sum to 1. :func:`check_supervised_targets` compares with
:func:`imix_teach.losses.supervised_targets`.

Exercise 2: the Fréchet distance between two sets of features (Appendix C.3), each fitted by a
Gaussian: ||m_a - m_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2}). :func:`check_frechet_distance`
compares with :func:`imix_teach.course.analysis.frechet_distance`.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..analysis import frechet_distance
from ...losses import supervised_targets
from . import check_with_hints


# ----------------------------------------------------------------------------- exercise 1
def solution_supervised_targets(labels: torch.Tensor) -> torch.Tensor:
    """(N,) class ids -> (N, N) rows: 1 / (number of samples with my label) where labels match, else 0."""
    same = (labels[:, None] == labels[None, :]).float()
    return same / same.sum(dim=1, keepdim=True)


def check_supervised_targets(student: Callable[..., torch.Tensor]) -> bool:
    """``student(labels) -> (N, N)`` on a few label vectors (all distinct, all equal, mixed)."""
    g = torch.Generator().manual_seed(11)
    cases = [(torch.arange(5),), (torch.zeros(4, dtype=torch.long),), (torch.randint(0, 3, (12,), generator=g),)]
    return check_with_hints("supervised_targets", student, supervised_targets, cases, TARGET_MISTAKES, atol=1e-6)


def _same_label(labels: torch.Tensor) -> torch.Tensor:
    return (labels[:, None] == labels[None, :]).float()


TARGET_MISTAKES = {
    "the rows were not normalised (divide each row by its number of positives so that it sums to 1)":
        lambda labels: _same_label(labels),
    "the labels were ignored (that is the self-supervised eye(N): every sample with my label is a positive)":
        lambda labels: torch.eye(len(labels)),
    "each row was divided by N instead of by its number of positives":
        lambda labels: _same_label(labels) / len(labels),
}


# ----------------------------------------------------------------------------- exercise 2
def solution_frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance of Gaussians fitted to a (N, D) and b (M, D), via scipy's matrix square root."""
    from scipy import linalg

    a, b = a.double().numpy(), b.double().numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    cross = linalg.sqrtm(cov_a @ cov_b).real  # may carry tiny imaginary round-off: keep the real part
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * cross))


def _frechet_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(12)
    x = torch.randn(400, 4, generator=g)
    mixing = torch.randn(4, 4, generator=g)
    return [
        (x, x.clone()),  # identical sets: distance 0
        (x, x + torch.tensor([1.0, 0.0, -2.0, 0.5])),  # a shift only: |shift|^2 = 5.25
        (x, torch.randn(300, 4, generator=g) @ mixing + 1.0),  # different covariance and mean
    ]


def _parts(a: torch.Tensor, b: torch.Tensor):
    a, b = a.double().numpy(), b.double().numpy()
    return a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)


def _trace_term(cov_a, cov_b) -> float:
    return float(np.trace(cov_a + cov_b) - 2 * np.sqrt(np.clip(np.linalg.eigvals(cov_a @ cov_b).real, 0, None)).sum())


FRECHET_MISTAKES = {
    "the covariance term is missing (add Tr(C_a + C_b - 2 (C_a C_b)^(1/2)))":
        lambda a, b: float(((a.double().mean(0) - b.double().mean(0)) ** 2).sum()),
    "the mean term is missing (add |mu_a - mu_b|^2)": lambda a, b: _trace_term(*_parts(a, b)[2:]),
    "you took the square root of the distance (the formula gives d^2: return it as it is)":
        lambda a, b: frechet_distance(a, b) ** 0.5,
    "the square root was taken entry by entry (np.sqrt); it must be the matrix square root (scipy.linalg.sqrtm)":
        lambda a, b: (lambda mu_a, mu_b, ca, cb: float(((mu_a - mu_b) ** 2).sum() + np.trace(ca + cb - 2 * np.sqrt(
            np.abs(ca @ cb)))))(*_parts(a, b)),
}


def check_frechet_distance(student: Callable[..., float]) -> bool:
    """``student(a, b) -> float`` on identical, shifted and differently shaped Gaussian samples."""
    return check_with_hints("frechet_distance", student, frechet_distance, _frechet_cases(), FRECHET_MISTAKES,
                            atol=1e-3)
