"""Notebook 06 (one i-Mix for images, speech and tables): checkers and reference solutions.

Exercise 1: write MixUp once so that it works for every domain: table rows (N, F), log-mel
spectrograms (N, 1, 32, 32) and colour images (N, 3, H, W), with one lam per batch or one per
sample. :func:`check_mix_any_domain` compares it with :func:`imix_teach.mixing.mixup`.

Exercise 2: write the tabular augmentation, masking noise: every entry becomes 0 with probability
p, independently, and each call draws a new mask. :func:`check_masking_noise` checks its
properties (it cannot compare values: your random draws need not match the library's).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from ...mixing import mixup
from . import check_with_hints, not_solved


# ----------------------------------------------------------------------------- exercise 1
def solution_mix_any(x: torch.Tensor, lam: float | torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """lam * x + (1 - lam) * x[perm] for x of any shape (N, ...); lam a float, a 0-d tensor or (N,)."""
    lam = torch.as_tensor(lam, dtype=x.dtype, device=x.device)
    if lam.dim() == 1:  # one lam per sample: (N,) -> (N, 1, ..., 1) so it scales whole samples
        lam = lam.view(-1, *([1] * (x.dim() - 1)))
    return lam * x + (1 - lam) * x[perm]


def _mix_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(6)
    shapes = {"table rows": (8, 54), "spectrograms": (8, 1, 32, 32), "images": (8, 3, 16, 16)}
    cases = []
    for shape in shapes.values():
        x = torch.randn(*shape, generator=g)
        perm = torch.randperm(shape[0], generator=g)
        cases.append((x, 0.7, perm))  # one lam for the batch (the paper)
        cases.append((x, torch.rand(shape[0], generator=g), perm))  # one lam per sample (the authors' code)
    return cases


def _per_sample(lam, x: torch.Tensor) -> torch.Tensor:
    lam = torch.as_tensor(lam, dtype=x.dtype)
    return lam.view(-1, *([1] * (x.dim() - 1))) if lam.dim() == 1 else lam


# Wrong answers students often give, by what went wrong; each takes the checker's arguments.
MIX_MISTAKES = {
    "lam and 1 - lam are swapped (lam weighs x, the sample itself; 1 - lam its partner x[perm])":
        lambda x, lam, perm: (1 - _per_sample(lam, x)) * x + _per_sample(lam, x) * x[perm],
    "the partner is x itself (mix with x[perm], the permuted batch)":
        lambda x, lam, perm: _per_sample(lam, x) * x + (1 - _per_sample(lam, x)) * x,
    "the batch was permuted but not mixed (return lam * x + (1 - lam) * x[perm])":
        lambda x, lam, perm: x[perm],
}


def check_mix_any_domain(student: Callable[..., torch.Tensor]) -> bool:
    """``student(x, lam, perm)`` on table rows, spectrograms and images, scalar and per-sample lam."""
    return check_with_hints("mix_any", student, lambda x, lam, perm: mixup(x, lam, perm), _mix_cases(), MIX_MISTAKES,
                            hint="A per-sample lam of shape (N,) must become (N, 1, ..., 1) to scale whole samples: "
                                 "lam.view(-1, *[1] * (x.dim() - 1)).")


# ----------------------------------------------------------------------------- exercise 2
def solution_mask_rows(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Masking noise: each entry of (N, F) set to 0 (the standardised column mean) with probability p."""
    mask = torch.rand(x.shape, generator=generator) < p
    return x.masked_fill(mask, 0.0)


def check_masking_noise(student: Callable[..., torch.Tensor], p: float = 0.2) -> bool:
    """Properties of ``student(x, p, generator)``: shape kept, entries unchanged or 0, about p of
    them zeroed, independent masks per call."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2000, 30, generator=g) + 5.0  # no entry is 0 before masking
    name = "mask_rows"
    try:
        first = student(x.clone(), p, g)
        second = student(x.clone(), p, g)
    except Exception as err:  # a student's bug is a verdict, not a crash
        print(f"[x] {name}: raised {type(err).__name__}: {err}")
        return False
    if first is None or second is None:
        return not_solved(name)
    if not torch.is_tensor(first) or first.shape != x.shape:
        print(f"[x] {name}: expected a tensor of shape {tuple(x.shape)}, got "
              f"{tuple(first.shape) if torch.is_tensor(first) else type(first).__name__}.")
        return False
    zero = first == 0
    if not bool(((first == x) | zero).all()):
        print(f"[x] {name}: entries must either stay as they are or become 0.")
        return False
    share = float(zero.float().mean())
    if abs(share - p) > 0.02:
        flipped = " (you kept entries with probability p: mask where rand < p)" if abs(share - (1 - p)) < 0.02 else ""
        print(f"[x] {name}: {100 * share:.1f}% of entries were masked, expected about {100 * p:.0f}%{flipped}.")
        return False
    rows_full = float((zero.all(1)).float().mean())
    if rows_full > 0.01 or float(zero.all(0).float().mean()) > 0:
        print(f"[x] {name}: mask entries independently, not whole rows or columns.")
        return False
    if torch.equal(first, second):
        print(f"[x] {name}: two calls gave the same mask; each view needs its own (draw from the generator).")
        return False
    print(f"[ok] {name}: {100 * share:.1f}% of entries masked, independently, a new mask per call.")
    return True
