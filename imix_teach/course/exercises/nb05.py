"""Notebook 05 (i-Mix on BYOL): BYOL's loss with soft virtual labels as an exercise, and a collapse check.

Exercise: :func:`check_byol_loss` — write BYOL's loss as a function of virtual labels (Eq. 11-12),
mean_i sum_n v_in (2 - 2 p_i . f_n) with p = normalize(predictions), f = normalize(target
embeddings); it must equal the library's :func:`~imix_teach.losses.byol_loss`.

Also here: :func:`byol_variants` (three ways to read Eq. 12 with a mixed label, compared in the
notebook).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ...losses import byol_loss
from ...mixing import mix_targets
from . import check_function


# ----------------------------------------------------------------------------- the exercise
def solution_byol_loss(predictions: torch.Tensor, target_embeddings: torch.Tensor,
                       targets: torch.Tensor) -> torch.Tensor:
    """BYOL with virtual labels: mean_i sum_n v_in (2 - 2 p_i . f_n). predictions, target_embeddings: (N, D).

    targets: (N, N) rows on the simplex (eye(N) = plain BYOL, mixed rows = i-Mix). A 0-d tensor.
    """
    p = predictions / predictions.norm(dim=1, keepdim=True)
    f = target_embeddings / target_embeddings.norm(dim=1, keepdim=True)
    per_pair = 2 - 2 * p @ f.T  # (N, N): the BYOL loss of prediction i against target embedding n
    return (targets * per_pair).sum(dim=1).mean()


def _cases() -> list[tuple]:
    g = torch.Generator().manual_seed(6)
    cases = []
    for n, d in ((4, 3), (8, 16), (6, 5)):
        predictions = 3 * torch.randn(n, d, generator=g)  # not normalised: the loss must normalise
        targets_emb = predictions + torch.randn(n, d, generator=g)
        eye = torch.eye(n)
        perm = torch.randperm(n, generator=g)
        lam = float(torch.rand((), generator=g))
        per_sample = torch.rand(n, generator=g)
        cases.append((predictions, targets_emb, eye))  # plain BYOL: 2 - 2 cos(p_i, f_i)
        cases.append((predictions, targets_emb, mix_targets(eye, lam, perm)))  # i-Mix, one lam per batch
        cases.append((predictions, targets_emb, mix_targets(eye, per_sample, perm)))  # one lam per sample
    return cases


def byol_variants(predictions: torch.Tensor, target_embeddings: torch.Tensor,
                  targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Three readings of Eq. 12 for soft targets v (each a 0-d tensor, mean over rows).

    - "linear": 2 - 2 p . (F v), the library's and the authors' code's form (linear in v);
    - "squared distance": ||p - F v||^2 = 1 - 2 p . (F v) + ||F v||^2: the linear form plus a
      term that depends only on the (constant) targets, so it has the same gradient;
    - "cosine to F v": 2 - 2 s(p, F v), which re-normalises F v: not linear in v.
    """
    p = F.normalize(predictions, dim=1)
    fv = targets @ F.normalize(target_embeddings, dim=1)  # (N, D): row i is F v_i
    return {
        "linear": (2 - 2 * (p * fv).sum(1)).mean(),
        "squared distance": ((p - fv) ** 2).sum(1).mean(),
        "cosine to F v": (2 - 2 * F.cosine_similarity(p, fv, dim=1)).mean(),
    }


def check_byol_loss(student: Callable[..., torch.Tensor]) -> bool:
    """``student(predictions, target_embeddings, targets) -> loss`` vs the library's byol_loss."""
    cases = _cases()
    ok = check_function("byol_loss", student, byol_loss, cases, atol=1e-4,
                        hint="Normalise p and f row-wise; per pair 2 - 2 p_i . f_n; weight by targets; "
                             "sum over n, mean over i.")
    if not ok:
        try:
            answer = student(*cases[1])
            if answer is not None:
                got = torch.as_tensor(answer, dtype=torch.float32)
                v = byol_variants(*cases[1])
                if got.shape == () and abs(float(got - v["cosine to F v"])) < 1e-4:
                    print("    hint: you compared p with F v re-normalised (2 - 2 cos(p, F v)); "
                          "the linear form weighs the per-pair losses 2 - 2 p . f_n by v instead.")
                elif got.shape == () and abs(float(got - v["squared distance"])) < 1e-4:
                    print("    hint: ||p - F v||^2 has the right gradient but differs by a constant; "
                          "write 2 - 2 p . (F v).")
        except Exception:
            pass
    return ok

