"""Notebook 02 (virtual labels and the N-pair loss): closed forms, checkers and reference solutions.

Exercise: write the N-pair loss (Eq. 5) in two steps, logits from embeddings and the loss from
logits and virtual labels. :func:`check_npair_logits` and :func:`check_npair_from_logits` compare
the student's functions with the library's :func:`~imix_teach.losses.npair_loss`.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ...losses import npair_loss
from ...mixing import mix_targets
from . import check_function, compare


# ----------------------------------------------------------------------------- closed forms
def npair_identical_orthonormal(n: int, tau: float) -> float:
    """N-pair loss when both views are the same orthonormal vectors: log(1 + (N - 1) e^{-1/tau}).

    Each anchor has similarity 1 with its positive and 0 with the N - 1 negatives, so
    -log(e^{1/tau} / (e^{1/tau} + N - 1)) = log(1 + (N - 1) e^{-1/tau}).
    """
    return math.log1p((n - 1) * math.exp(-1.0 / tau))


def simclr_identical_orthonormal(n: int, tau: float) -> float:
    """SimCLR's (2N-1)-way loss in the same setting: log(1 + (2N - 2) e^{-1/tau}) (2N - 2 negatives)."""
    return math.log1p((2 * n - 2) * math.exp(-1.0 / tau))


# ----------------------------------------------------------------------------- the exercise
def solution_npair_logits(anchors: torch.Tensor, positives: torch.Tensor, tau: float) -> torch.Tensor:
    """logits_ik = s(anchor_i, positive_k) / tau, with s the cosine similarity. (N, N)."""
    a = anchors / anchors.norm(dim=1, keepdim=True)
    p = positives / positives.norm(dim=1, keepdim=True)
    return a @ p.T / tau


def solution_npair_from_logits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Eq. 5 averaged over anchors: mean_i -sum_n v_in log softmax(logits_i)_n. A 0-d tensor."""
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)  # stable log-softmax
    return -(targets * log_prob).sum(dim=1).mean()


def _npair_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(2)
    cases = []
    for n, d, tau in ((4, 3, 0.2), (8, 16, 0.5), (6, 6, 0.07)):
        anchors = torch.randn(n, d, generator=g) * 3  # not normalised: the logits must normalise
        positives = anchors + 0.5 * torch.randn(n, d, generator=g)
        eye = torch.eye(n)
        lam = float(torch.rand((), generator=g))
        perm = torch.randperm(n, generator=g)
        cases.append((anchors, positives, eye, tau))  # virtual labels v_i = e_i
        cases.append((anchors, positives, mix_targets(eye, lam, perm), tau))  # i-Mix's mixed labels
    return cases


def check_npair_logits(student: Callable[..., torch.Tensor]) -> bool:
    """``student(anchors, positives, tau) -> (N, N) logits`` vs cosine similarities / tau."""
    cases = [(a, p, tau) for a, p, _, tau in _npair_cases()]
    return check_function("npair_logits", student,
                          lambda a, p, tau: F.normalize(a, dim=1) @ F.normalize(p, dim=1).T / tau, cases,
                          atol=1e-4, hint="L2-normalise each row of both views first, then divide by tau.")


def check_npair_from_logits(student: Callable[..., torch.Tensor]) -> bool:
    """``student(logits, targets) -> loss`` fed the true logits must equal the library's npair_loss."""

    def through_logits(anchors, positives, targets, tau):
        logits = solution_npair_logits(anchors, positives, tau)
        return student(logits, targets)

    return check_function("npair_from_logits", through_logits,
                          lambda a, p, t, tau: npair_loss(a, p, t, tau), _npair_cases(), atol=1e-4,
                          hint="Row-wise log-softmax, weight by the targets, sum over candidates, mean over anchors.")


def check_closed_form(n: int = 8, tau: float = 0.2) -> bool:
    """npair_loss on identical orthonormal views equals log(1 + (N - 1) e^{-1/tau})."""
    views = torch.eye(n, 2 * n)
    return compare(f"N-pair closed form (N={n}, tau={tau})", npair_loss(views, views, tau=tau),
                   npair_identical_orthonormal(n, tau))
