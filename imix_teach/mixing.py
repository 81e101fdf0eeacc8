"""MixUp in input space and in (virtual-)label space: the whole of i-Mix's data side.

i-Mix (Sec. 3.2) treats each of the N instances of a batch as its own class, with *virtual
label* v_i = e_i in R^N, and mixes inputs and virtual labels with the same coefficient:

    x = lam * x_i + (1 - lam) * x_j,      v = lam * v_i + (1 - lam) * v_j,      lam ~ Beta(alpha, alpha)

Mixing partners j come from ``randperm(N)`` (self-pairs allowed, as in the authors' code).
"""
from __future__ import annotations

import numbers
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
    if n is not None and (isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1):
        raise ValueError(f"n must be a positive int or None, got {n!r}")
    shape = () if n is None else (int(n),)
    lam = _beta_torch(float(alpha), shape, generator) if alpha >= 1 else _beta_log_space(float(alpha), shape, generator)
    return lam if device is None else lam.to(device)


def _beta_torch(alpha: float, shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    """torch's Beta sampler: exact for alpha >= 1, and the draws every earlier result was made with."""
    concentration = torch.full(shape, alpha)
    beta = torch.distributions.Beta(concentration, concentration, validate_args=False)  # alpha was checked
    if generator is None:
        return beta.sample()
    # torch's Beta sampler takes no generator: draw a seed from ours and sample inside a forked
    # RNG, so results follow `generator` and the global RNG is left untouched. The sampler draws
    # from the CPU generator only: torch.manual_seed would also seed every GPU's, 0.16 ms a step.
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return beta.sample()


def _beta_log_space(alpha: float, shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    """Beta(alpha, alpha) for small alpha, where Gamma(alpha) draws underflow to 0.

    lam = G1 / (G1 + G2) with G ~ Gamma(alpha) is Beta(alpha, alpha). For small alpha, G itself
    underflows (torch's Beta then returns 0/0 -> 0.5, maximal mixing), so work with log G:
    G(a) = G(a + 1) * U^(1/a)  =>  log G(a) = log G(a + 1) + log(U) / a, lam = sigmoid(log G1 - log G2).
    """
    dev = generator.device if generator is not None else torch.device("cpu")
    if dev.type not in ("cpu", "cuda"):  # no gamma sampler there (e.g. MPS): seed a CPU generator from ours
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator, device=dev)))
        dev = torch.device("cpu")
    dtype = torch.float64 if dev.type == "cpu" else torch.float32
    conc = torch.full((2, *shape), alpha + 1.0, dtype=dtype, device=dev)
    log_u = torch.rand((2, *shape), dtype=dtype, device=dev, generator=generator).clamp_min(torch.finfo(dtype).tiny).log()
    log_g = torch._standard_gamma(conc, generator=generator).log() + log_u / alpha
    return torch.sigmoid(log_g[0] - log_g[1]).float()


def _check_lam_perm(lam: Lam, perm: torch.Tensor, n: int) -> torch.Tensor:
    if isinstance(lam, bool) or not (torch.is_tensor(lam) or isinstance(lam, numbers.Real)):
        raise TypeError(f"lam must be a number or a tensor of shape () or ({n},), got {type(lam).__name__}")
    _checks.tensor("perm", perm)
    lam_t = torch.as_tensor(lam, dtype=torch.float32)
    if lam_t.dim() > 1 or (lam_t.dim() == 1 and lam_t.shape[0] != n):
        raise ValueError(f"lam must be a scalar or shape ({n},), got shape {tuple(lam_t.shape)}")
    if not bool(torch.isfinite(lam_t).all()) or bool(((lam_t < 0) | (lam_t > 1)).any()):
        raise ValueError("lam must lie in [0, 1]")
    if perm.dim() != 1 or perm.shape[0] != n:
        raise ValueError(f"perm must have shape ({n},), got {tuple(perm.shape)}")
    if perm.is_floating_point() or perm.dtype == torch.bool or bool(((perm < 0) | (perm >= n)).any()):
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
    _checks.tensor("targets", targets)
    if targets.dim() == 1 and not targets.is_floating_point():
        if num_classes is None:
            raise ValueError("targets are class ids: pass num_classes to one-hot encode them")
        if check:
            _checks.class_ids("targets", targets, num_classes)
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
    x: torch.Tensor, lam: Lam, perm: torch.Tensor, *, generator: torch.Generator | None = None, check: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix (i-CutMix): paste a box of area ~(1 - lam) from ``x[perm]`` into ``x``.

    x: (N, C, H, W). The box centre is uniform over the image and clipped at the border, so the
    true share of ``x`` is recomputed from the clipped box: returns (mixed x, lam_used) with
    lam_used shaped like ``lam`` (one box per batch for a scalar lam, one per sample for (N,)).
    check: validate the values of x (finite), lam and perm (a GPU sync; :func:`imix` passes False, its
    own draws are valid and it checked x).
    """
    _checks.tensor("x", x)
    if x.dim() != 4:
        raise ValueError(f"x must be (N, C, H, W) for cutmix, got shape {tuple(x.shape)}")
    if check:
        _checks.finite("x", x)
    n, _, h, w = x.shape
    lam_t = (_check_lam_perm(lam, perm, n) if check else torch.as_tensor(lam, dtype=torch.float32)).to(x.device)
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


def inputmix(x: torch.Tensor, *, generator: torch.Generator | None = None, check: bool = True) -> torch.Tensor:
    """InputMix (Sec. 3.3): mix each input with two random others, labels untouched.

    Coefficients (0.5 * l1 + 0.5, 0.5 * l2, 0.5 * l3), l ~ Dirichlet(1, 1, 1) per sample, so the
    principal input keeps at least half the weight and stays the one its label describes.
    Used together with i-Mix when no domain augmentation exists (Table 3). x must be floating point
    (mixing integer ids would truncate); check: also refuse NaN/inf in x (a GPU sync, so the
    training step passes False).
    """
    _checks.tensor("x", x, floating=True)
    if x.dim() < 1 or x.shape[0] < 1:
        raise ValueError(f"x must be a non-empty batch (N, ...), got shape {tuple(x.shape)}")
    if check:
        _checks.finite("x", x)
    n = x.shape[0]
    dev = generator.device if generator is not None else x.device
    # Dirichlet(1,1,1) = normalised Exp(1) draws; -log(U) keeps it on `generator`.
    e = -torch.log(torch.rand(n, 3, generator=generator, device=dev).clamp_min(1e-12))
    dirichlet = (e / e.sum(1, keepdim=True)).to(x.device, x.dtype)
    coef = 0.5 * dirichlet + torch.tensor([0.5, 0.0, 0.0], device=x.device, dtype=x.dtype)
    p1 = torch.randperm(n, generator=generator, device=dev).to(x.device)
    p2 = torch.randperm(n, generator=generator, device=dev).to(x.device)
    shape = (-1,) + (1,) * (x.dim() - 1)
    return coef[:, 0].view(shape) * x + coef[:, 1].view(shape) * x[p1] + coef[:, 2].view(shape) * x[p2]


def inputmix_pair(
    view1: torch.Tensor, view2: torch.Tensor, *, generator: torch.Generator | None = None, check: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """InputMix as the authors' code does it: partners drawn from both views together (2N).

    view1, view2: (N, ...) -> both (N, ...). The 2N inputs ``cat([view1, view2])`` go through
    :func:`inputmix` as one batch, so an input's two partners may come from either view (even its
    own other view); the principal input is unchanged, so each output row still belongs to its pair.
    check: as in :func:`inputmix`, naming the view that holds a NaN or inf.
    """
    for name, view in (("view1", view1), ("view2", view2)):
        _checks.tensor(name, view, floating=True)
        if check:
            _checks.finite(name, view)
    if view1.shape != view2.shape:
        raise ValueError(f"view1 and view2 must have the same shape, got {tuple(view1.shape)} and {tuple(view2.shape)}")
    mixed = inputmix(torch.cat([view1, view2]), generator=generator, check=False)
    return mixed[: view1.shape[0]], mixed[view1.shape[0]:]


class Mixed(NamedTuple):
    """What :func:`imix` returns: mixed inputs, their mixed virtual labels, and how they were made."""

    inputs: torch.Tensor  # (N, ...)
    targets: torch.Tensor  # (N, C): lam * targets + (1 - lam) * targets[perm]
    lam: torch.Tensor  # 0-d (per batch) or (N,) (per sample)
    perm: torch.Tensor  # (N,)
    mode: str = "mixup"

    def apply_to(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix another batch (N, ...) with the same partners and lam (SimCLR mixes both views so).

        Returns (mixed x, lam used): for "cutmix" a new box of the same area, whose clipped share
        is recomputed, so the lam that goes with it may differ from ``self.lam``.
        """
        if self.mode == "cutmix":
            return cutmix(x, self.lam, self.perm, generator=generator, check=False)
        return mixup(x, self.lam, self.perm, check=False), self.lam


def imix(
    x: torch.Tensor,
    alpha: float,
    *,
    targets: torch.Tensor | None = None,
    mode: str = "mixup",
    per_sample: bool = False,
    max_lam: bool = False,
    generator: torch.Generator | None = None,
    check: bool = True,
) -> Mixed:
    """Mix a batch and its virtual labels in one call (Algorithm 1, lines 2-3).

    x: (N, ...) anchor views. targets: (N, C) label rows to mix; None = virtual labels eye(N).
    mode: "mixup" or "cutmix". per_sample: one lam per sample (authors' code) instead of one per
    batch (paper). max_lam: use max(lam, 1 - lam) so the first input dominates (authors' code).
    check: also check values (finite x, targets rows on the simplex); this syncs a GPU, so a
    training step passes False after the shape checks of :func:`imix_teach._checks.views`.
    """
    if mode not in ("mixup", "cutmix"):
        raise ValueError(f"mode must be 'mixup' or 'cutmix', got {mode!r}")
    _checks.tensor("x", x)
    if x.dim() < 1:
        raise ValueError("x must have a batch dimension (N, ...), got a 0-d tensor")
    n = x.shape[0]
    _checks.batch_size("x", n)
    if targets is not None:
        _checks.tensor("targets", targets, floating=True)
        if targets.dim() != 2 or targets.shape[0] != n:
            raise ValueError(f"targets must be (N, C) = ({n}, C) label rows, got shape {tuple(targets.shape)}")
    if check:
        _checks.finite("x", x)
        if targets is not None:
            _checks.simplex_rows("targets", targets, tuple(targets.shape))
    lam = sample_lambda(alpha, n if per_sample else None, generator=generator)
    if max_lam:
        lam = torch.maximum(lam, 1 - lam)
    dev = generator.device if generator is not None else x.device
    perm = torch.randperm(n, generator=generator, device=dev).to(x.device)
    if targets is None:
        targets = torch.eye(n, device=x.device)
    if mode == "cutmix":
        mixed, lam = cutmix(x, lam, perm, generator=generator, check=False)
    else:
        mixed = mixup(x, lam, perm, check=False)
    lam = lam.to(x.device)
    return Mixed(mixed, mix_targets(targets, lam, perm, check=False), lam, perm, mode)
