"""Notebook 03 (i-Mix on the N-pair loss): Algorithm 1 as an exercise, its checker and reference solution.

Exercise: write the loss of Algorithm 1 of the paper, from a batch of two views to one number:
mix the anchor view only, embed both views, logits of the L2-normalised embeddings divided by
tau, then ``lam * CE(logits, arange(N)) + (1 - lam) * CE(logits, perm)``.
:func:`check_imix_npair_loss` compares the student's function with the library's
``npair_loss(f(mixup(a, lam, perm)), f(b), mix_targets(eye(N), lam, perm), tau)`` and, when the
answer is wrong, says which common mistake it matches.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ...losses import npair_loss
from ...mixing import mix_targets, mixup
from . import check_with_hints

Embed = Callable[[torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------- the exercise
def solution_imix_npair_loss(f: Embed, a: torch.Tensor, b: torch.Tensor, lam: float, perm: torch.Tensor,
                             tau: float) -> torch.Tensor:
    """Algorithm 1: i-Mix N-pair loss of one batch. f: embedding network; a, b: (N, ...) two views.

    lam: the batch's mixing coefficient; perm: (N,) mixing partners; tau: temperature. A 0-d tensor.
    """
    n = a.shape[0]
    a_mixed = lam * a + (1 - lam) * a[perm]  # mix the anchor view only; b stays clean
    za = F.normalize(f(a_mixed), dim=1)
    zb = F.normalize(f(b), dim=1)
    logits = za @ zb.T / tau  # (N, N): anchor i against every positive k
    return lam * F.cross_entropy(logits, torch.arange(n)) + (1 - lam) * F.cross_entropy(logits, perm)


def reference_imix_npair_loss(f: Embed, a: torch.Tensor, b: torch.Tensor, lam: float, perm: torch.Tensor,
                              tau: float) -> torch.Tensor:
    """The same loss from the library's pieces: mixup, mix_targets and npair_loss (Eq. 6)."""
    targets = mix_targets(torch.eye(a.shape[0]), lam, perm)
    return npair_loss(f(mixup(a, lam, perm)), f(b), targets, tau)


def _embedder(in_features: int, seed: int) -> Embed:
    """A fixed, deterministic embedding network (flatten + linear + tanh + linear): no BN, no randomness."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, 16), nn.Tanh(), nn.Linear(16, 8))
    net.requires_grad_(False)
    return net


def _cases() -> list[tuple]:
    g = torch.Generator().manual_seed(3)
    images = torch.rand(6, 1, 4, 4, generator=g)
    images2 = images + 0.1 * torch.randn(6, 1, 4, 4, generator=g)
    rows = torch.randn(8, 10, generator=g)
    rows2 = rows + 0.3 * torch.randn(8, 10, generator=g)
    f_img, f_row = _embedder(16, 0), _embedder(10, 1)
    self_pairs = torch.tensor([2, 1, 0, 5, 3, 4])  # instance 1 is mixed with itself: allowed (randperm)
    return [
        (f_img, images, images2, 0.7, self_pairs, 0.2),
        (f_row, rows, rows2, 0.35, torch.randperm(8, generator=g), 0.5),
        (f_img, images, images2, 1.0, self_pairs, 0.2),  # lam = 1: plain N-pair (Eq. 5)
        (f_row, rows, rows2, 0.0, torch.randperm(8, generator=g), 0.1),  # lam = 0: all weight on the partner
    ]


def _logits(f: Embed, a, b, tau, normalise: bool = True) -> torch.Tensor:
    za, zb = f(a), f(b)
    if normalise:
        za, zb = F.normalize(za, dim=1), F.normalize(zb, dim=1)
    return za @ zb.T / tau


def _two_ce(logits, lam, perm) -> torch.Tensor:
    return lam * F.cross_entropy(logits, torch.arange(len(perm))) + (1 - lam) * F.cross_entropy(logits, perm)


# Wrong answers students often give, by what went wrong; each takes the checker's arguments.
MISTAKES = {
    "both views were mixed (only the anchor view a is mixed; b stays clean)":
        lambda f, a, b, lam, perm, tau: _two_ce(_logits(f, mixup(a, lam, perm), mixup(b, lam, perm), tau), lam, perm),
    "the targets were not mixed (add (1 - lam) * CE(logits, perm) to lam * CE(logits, arange(N)))":
        lambda f, a, b, lam, perm, tau: F.cross_entropy(_logits(f, mixup(a, lam, perm), b, tau), torch.arange(len(perm))),
    "lam and 1 - lam are swapped (lam weighs CE(logits, arange(N)), the anchor's own positive)":
        lambda f, a, b, lam, perm, tau: _two_ce(_logits(f, mixup(a, lam, perm), b, tau), 1 - lam, perm),
    "the embeddings were not L2-normalised before the dot product (use F.normalize(z, dim=1))":
        lambda f, a, b, lam, perm, tau: _two_ce(_logits(f, mixup(a, lam, perm), b, tau, normalise=False), lam, perm),
    "the logits were not divided by tau":
        lambda f, a, b, lam, perm, tau: _two_ce(_logits(f, mixup(a, lam, perm), b, 1.0), lam, perm),
    "the logits were multiplied by tau instead of divided":
        lambda f, a, b, lam, perm, tau: _two_ce(_logits(f, mixup(a, lam, perm), b, 1 / tau), lam, perm),
}


def check_imix_npair_loss(student: Callable[..., torch.Tensor]) -> bool:
    """``student(f, a, b, lam, perm, tau) -> loss`` vs the library's i-Mix N-pair loss on four cases."""
    return check_with_hints("imix_npair_loss", student, reference_imix_npair_loss, _cases(), MISTAKES, atol=1e-4,
                            hint="Algorithm 1: mix a only; logits = normalize(f(a_mix)) @ normalize(f(b)).T / tau; "
                                 "lam * CE(logits, arange(N)) + (1 - lam) * CE(logits, perm).")
