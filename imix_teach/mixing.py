"""MixUp in input space and in (virtual-)label space: the whole of i-Mix's data side.

i-Mix (Sec. 3.2) treats each of the N instances of a batch as its own class, with *virtual
label* v_i = e_i in R^N, and mixes inputs and virtual labels with the same coefficient:

    x = lam * x_i + (1 - lam) * x_j,      v = lam * v_i + (1 - lam) * v_j,      lam ~ Beta(alpha, alpha)

Mixing partners j come from ``randperm(N)`` (self-pairs allowed, as in the authors' code).
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from . import _checks

Lam = float | torch.Tensor


def sample_lambda(
    alpha: float,
    n: int | None = None,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Draw mixing coefficients lam ~ Beta(alpha, alpha).

    Returns a 0-d tensor when ``n`` is None (one lam per batch, as in the paper) or shape (n,)
    (one per sample, as in the authors' code). Small alpha pushes lam towards 0 or 1 (little
    mixing); alpha = 1 is uniform; large alpha concentrates lam around 0.5.
    """
    _checks.positive("alpha", alpha)
    if n is not None and (int(n) != n or n < 1):
        raise ValueError(f"n must be a positive int or None, got {n!r}")
    shape = () if n is None else (int(n),)
    concentration = torch.full(shape, float(alpha))
    beta = torch.distributions.Beta(concentration, concentration)
    if generator is None:
        lam = beta.sample()
    else:
        # torch's Beta sampler takes no generator: draw a seed from ours and sample inside a
        # forked RNG, so results follow `generator` and the global RNG is left untouched.
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            lam = beta.sample()
    return lam if device is None else lam.to(device)


def _check_lam_perm(lam: Lam, perm: torch.Tensor, n: int) -> torch.Tensor:
    lam_t = torch.as_tensor(lam, dtype=torch.float32)
    if lam_t.dim() > 1 or (lam_t.dim() == 1 and lam_t.shape[0] != n):
        raise ValueError(f"lam must be a scalar or shape ({n},), got shape {tuple(lam_t.shape)}")
    if not bool(torch.isfinite(lam_t).all()) or bool(((lam_t < 0) | (lam_t > 1)).any()):
        raise ValueError("lam must lie in [0, 1]")
    if perm.dim() != 1 or perm.shape[0] != n:
        raise ValueError(f"perm must have shape ({n},), got {tuple(perm.shape)}")
    if perm.is_floating_point() or bool(((perm < 0) | (perm >= n)).any()):
        raise ValueError(f"perm must hold integer indices in [0, {n}), e.g. torch.randperm({n})")
    return lam_t


def _broadcast(lam: Lam, like: torch.Tensor) -> Lam:
    """Shape (N,) lam -> (N, 1, ..., 1) so it scales whole samples of ``like``."""
    if torch.is_tensor(lam) and lam.dim() == 1:
        return lam.to(like.device, like.dtype).view(-1, *([1] * (like.dim() - 1)))
    if torch.is_tensor(lam):
        return lam.to(like.device, like.dtype)
    return lam


def mixup(x: torch.Tensor, lam: Lam, perm: torch.Tensor, *, check: bool = True) -> torch.Tensor:
    """MixUp of a batch with a permutation of itself: ``lam * x + (1 - lam) * x[perm]``.

    x: (N, ...) any input (images, spectrograms, table rows); lam: scalar or (N,); perm: (N,).
    """
    if check:
        _checks.finite("x", x)
        if x.dim() < 1:
            raise ValueError("x must have a batch dimension, got a 0-d tensor")
        _check_lam_perm(lam, perm, x.shape[0])
    lam_b = _broadcast(lam, x)
    return lam_b * x + (1 - lam_b) * x[perm]


def mix_targets(
    targets: torch.Tensor,
    lam: Lam,
    perm: torch.Tensor,
    *,
    num_classes: int | None = None,
    check: bool = True,
) -> torch.Tensor:
    """Mix label rows the same way as inputs: ``lam * targets + (1 - lam) * targets[perm]``.

    targets: (N, C) probability rows (e.g. virtual labels ``eye(N)``), or (N,) class ids with
    ``num_classes``. Returns (N, C); each row stays on the simplex because it is a convex
    combination of two simplex rows.
    """
    if targets.dim() == 1 and not targets.is_floating_point():
        if num_classes is None:
            raise ValueError("targets are class ids: pass num_classes to one-hot encode them")
        targets = torch.nn.functional.one_hot(targets, num_classes).float()
    if check:
        _checks.ndim("targets", targets, 2)
        _checks.simplex_rows("targets", targets, tuple(targets.shape))
        _check_lam_perm(lam, perm, targets.shape[0])
    if torch.is_tensor(lam) and lam.dim() == 1:
        lam = lam.to(targets.device, targets.dtype).unsqueeze(1)
    elif torch.is_tensor(lam):
        lam = lam.to(targets.device, targets.dtype)
    return lam * targets + (1 - lam) * targets[perm]


def cutmix(
    x: torch.Tensor, lam: Lam, perm: torch.Tensor, *, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix (i-CutMix): paste a box of area ~(1 - lam) from ``x[perm]`` into ``x``.

    x: (N, C, H, W). The box centre is uniform over the image and clipped at the border, so the
    true share of ``x`` is recomputed from the clipped box: returns (mixed x, lam_used) with
    lam_used shaped like ``lam`` (one box per batch for a scalar lam, one per sample for (N,)).
    """
    if x.dim() != 4:
        raise ValueError(f"x must be (N, C, H, W) for cutmix, got shape {tuple(x.shape)}")
    n, _, h, w = x.shape
    lam_t = _check_lam_perm(lam, perm, n).to(x.device)
    per_sample = lam_t.dim() == 1
    k = n if per_sample else 1
    cut = torch.sqrt(1.0 - lam_t).expand(k)
    cy = torch.rand(k, generator=generator, device=generator.device if generator else None).to(x.device) * h
    cx = torch.rand(k, generator=generator, device=generator.device if generator else None).to(x.device) * w
    y0 = (cy - cut * h / 2).round().clamp(0, h)
    y1 = (cy + cut * h / 2).round().clamp(0, h)
    x0 = (cx - cut * w / 2).round().clamp(0, w)
    x1 = (cx + cut * w / 2).round().clamp(0, w)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    box = (
        (rows >= y0.view(-1, 1, 1)) & (rows < y1.view(-1, 1, 1))
        & (cols >= x0.view(-1, 1, 1)) & (cols < x1.view(-1, 1, 1))
    )  # (k, H, W)
    mixed = torch.where(box.unsqueeze(1), x[perm], x)
    lam_used = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
    return mixed, (lam_used if per_sample else lam_used[0])


def inputmix(x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """InputMix (Sec. 3.3): mix each input with two random others, labels untouched.

    Coefficients (0.5 * l1 + 0.5, 0.5 * l2, 0.5 * l3), l ~ Dirichlet(1, 1, 1) per sample, so the
    principal input keeps at least half the weight and stays the one its label describes.
    Used together with i-Mix when no domain augmentation exists (Table 3).
    """
    n = x.shape[0]
    dev = generator.device if generator is not None else x.device
    # Dirichlet(1,1,1) = normalised Exp(1) draws; -log(U) keeps it on `generator`.
    e = -torch.log(torch.rand(n, 3, generator=generator, device=dev).clamp_min(1e-12))
    l = (e / e.sum(1, keepdim=True)).to(x.device, x.dtype)
    coef = 0.5 * l + torch.tensor([0.5, 0.0, 0.0], device=x.device, dtype=x.dtype)
    p1 = torch.randperm(n, generator=generator, device=dev).to(x.device)
    p2 = torch.randperm(n, generator=generator, device=dev).to(x.device)
    shape = (-1,) + (1,) * (x.dim() - 1)
    return coef[:, 0].view(shape) * x + coef[:, 1].view(shape) * x[p1] + coef[:, 2].view(shape) * x[p2]


def inputmix_pair(
    view1: torch.Tensor, view2: torch.Tensor, *, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """InputMix as the authors' code does it: partners drawn from both views together (2N).

    view1, view2: (N, ...) -> both (N, ...). The 2N inputs ``cat([view1, view2])`` go through
    :func:`inputmix` as one batch, so an input's two partners may come from either view (even its
    own other view); the principal input is unchanged, so each output row still belongs to its pair.
    """
    if view1.shape != view2.shape:
        raise ValueError(f"view1 and view2 must have the same shape, got {tuple(view1.shape)} and {tuple(view2.shape)}")
    mixed = inputmix(torch.cat([view1, view2]), generator=generator)
    return mixed[: view1.shape[0]], mixed[view1.shape[0]:]


class Mixed(NamedTuple):
    """What :func:`imix` returns: mixed inputs, their mixed virtual labels, and how they were made."""

    inputs: torch.Tensor  # (N, ...)
    targets: torch.Tensor  # (N, C): lam * targets + (1 - lam) * targets[perm]
    lam: torch.Tensor  # 0-d (per batch) or (N,) (per sample)
    perm: torch.Tensor  # (N,)


def imix(
    x: torch.Tensor,
    alpha: float,
    *,
    targets: torch.Tensor | None = None,
    mode: str = "mixup",
    per_sample: bool = False,
    max_lam: bool = False,
    generator: torch.Generator | None = None,
) -> Mixed:
    """Mix a batch and its virtual labels in one call (Algorithm 1, lines 2-3).

    x: (N, ...) anchor views. targets: (N, C) label rows to mix; None = virtual labels eye(N).
    mode: "mixup" or "cutmix". per_sample: one lam per sample (authors' code) instead of one per
    batch (paper). max_lam: use max(lam, 1 - lam) so the first input dominates (authors' code).
    """
    if mode not in ("mixup", "cutmix"):
        raise ValueError(f"mode must be 'mixup' or 'cutmix', got {mode!r}")
    n = x.shape[0]
    _checks.batch_size("x", n)
    lam = sample_lambda(alpha, n if per_sample else None, generator=generator)
    if max_lam:
        lam = torch.maximum(lam, 1 - lam)
    dev = generator.device if generator is not None else x.device
    perm = torch.randperm(n, generator=generator, device=dev).to(x.device)
    if targets is None:
        targets = torch.eye(n, device=x.device)
    if mode == "cutmix":
        mixed, lam = cutmix(x, lam, perm, generator=generator)
    else:
        mixed = mixup(x, lam, perm, check=False)
    lam = lam.to(x.device)
    return Mixed(mixed, mix_targets(targets, lam, perm, check=False), lam, perm)
