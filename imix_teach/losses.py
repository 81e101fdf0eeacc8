"""Contrastive losses as small pure functions of embeddings and (virtual-)label targets.

Every loss here is *linear in its targets*, which is what makes i-Mix work (Appendix B):

    loss(x_mix, lam * v_i + (1 - lam) * v_j) == lam * loss(x_mix, v_i) + (1 - lam) * loss(x_mix, v_j)

Embeddings need not be normalised on input: each loss L2-normalises, so s(a, b) = a . b is the
cosine similarity. The logits s / tau are computed in at least float32, fp16 and bf16 embeddings
(AMP) included, so a tiny tau gives the large but exact loss, about (gap in cosine) / tau: for
one-hot anchors whose positive is orthogonal, tau = 1e-8 gives 1e8 in every dtype. A tau so small
that a batch's loss would overflow that dtype (below 4 N / 3.4e38 in float32) raises ValueError
naming tau instead of returning inf or NaN (checked on every call: it reads no tensor values).
``check=False`` skips the other input validation (the methods' hot path uses it); the checks live
in :mod:`imix_teach._loss_checks`, so each body here reads as its equation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import _loss_checks


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, *, check: bool = True) -> torch.Tensor:
    """Cross-entropy with soft targets, averaged over rows: mean_i -sum_c t_ic log softmax(logits_i)_c.

    logits: (N, C). targets: (N, C) probability rows, or (N,) integer class ids.
    """
    if check:
        _loss_checks.soft_cross_entropy(logits, targets)
    if targets.dim() == 1:
        return F.cross_entropy(logits, targets)
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def unit(x: torch.Tensor) -> torch.Tensor:
    """Rows of x (N, D) scaled to unit L2 norm, without overflow or underflow.

    A row whose squared norm would overflow (1e20 in float32, or 300 in fp16) or fall under
    F.normalize's eps (1e-30) is divided by its largest |entry| first; every other row is exactly
    ``F.normalize``'s, so ordinary training is unchanged bit for bit. A zero row stays zero.
    """
    scale = x.detach().abs().amax(dim=1, keepdim=True)
    extreme = (scale > torch.finfo(x.dtype).max ** 0.5 / x.shape[1] ** 0.5) | (scale < 1e-6)
    return F.normalize(torch.where(extreme, x / scale.clamp_min(torch.finfo(x.dtype).tiny), x), dim=1)


def _over_tau(cosines: torch.Tensor, tau: float) -> torch.Tensor:
    """cos / tau in at least float32: in fp16 (AMP) a small tau overflows past 65504 to inf, then NaN.

    A tau too small even for that dtype raises ValueError naming tau (checked on every call: it
    reads no tensor values).
    """
    dtype = torch.promote_types(cosines.dtype, torch.float32)
    _loss_checks.tau_fits(tau, dtype, cosines.shape[0])
    return cosines.to(dtype) / tau


def npair_loss(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    targets: torch.Tensor | None = None,
    tau: float = 0.2,
    *,
    check: bool = True,
) -> torch.Tensor:
    """N-pair contrastive loss (Eq. 5); with mixed targets it is i-Mix N-pair (Eq. 6).

    anchors: (N, D) embeddings of one view; positives: (M, D) of the other, M >= N (M = W*N when
    gathered from W processes). targets: (N, M) virtual labels, None = eye(N) (needs M == N:
    instance i's positive is positives[i]; the other positives are its negatives, and an anchor
    is never contrasted with itself).
    logits_ik = s(anchor_i, positive_k) / tau;  loss = mean_i -sum_k v_ik log softmax(logits_i)_k.
    """
    if check:
        _loss_checks.npair(anchors, positives, targets, tau)
    logits = _over_tau(unit(anchors) @ unit(positives).T, tau)
    if targets is None:
        targets = torch.arange(anchors.shape[0], device=anchors.device)
    return soft_cross_entropy(logits, targets, check=False)


def moco_loss(
    queries: torch.Tensor,
    keys: torch.Tensor,
    queue: torch.Tensor,
    targets: torch.Tensor | None = None,
    tau: float = 0.2,
    *,
    check: bool = True,
) -> torch.Tensor:
    """MoCo's loss in the (N + K)-way form that i-Mix needs (Eq. 8).

    queries: (N, D) from the query encoder; keys: (M, D) from the EMA key encoder, M >= N (M = W*N
    when gathered from W processes; gradients are not taken through them); queue: (K, D) past
    keys. targets: (N, M) virtual labels over the batch's keys, None = eye(N) (needs M == N); the
    queue gets zero target mass. The classic (K+1)-way loss
    gives each query its own label set [k_i; queue], so labels of two queries cannot be mixed;
    sharing the N + K candidates fixes that.
    """
    if check:
        _loss_checks.moco(queries, keys, queue, targets, tau)
    n = queries.shape[0]
    candidates = torch.cat([unit(keys.detach()), unit(queue.detach())])
    logits = _over_tau(unit(queries) @ candidates.T, tau)  # (N, M + K)
    if targets is None:
        return F.cross_entropy(logits, torch.arange(n, device=queries.device))
    return soft_cross_entropy(logits, F.pad(targets, (0, queue.shape[0])), check=False)


def byol_loss(
    predictions: torch.Tensor,
    target_embeddings: torch.Tensor,
    targets: torch.Tensor | None = None,
    *,
    check: bool = True,
) -> torch.Tensor:
    """BYOL's loss written with virtual labels (Eq. 12): mean_i [2 - 2 p_i . (F v_i)].

    predictions: (N, D) online predictor outputs p; target_embeddings: (N, D) EMA-target
    projections F (a constant: no gradient flows into it). targets: (N, N), None = eye(N).
    For one-hot v_i it is 2 - 2 cos(p_i, f_i); for mixed v it is lam (2 - 2 cos(p, f_i)) +
    (1 - lam)(2 - 2 cos(p, f_j)): linear in v, as the authors' code computes it.
    """
    if check:
        _loss_checks.byol(predictions, target_embeddings, targets)
    p = unit(predictions)
    f = unit(target_embeddings.detach())
    if targets is None:
        return (2 - 2 * (p * f).sum(dim=1)).mean()
    return (targets * (2 - 2 * p @ f.T)).sum(dim=1).mean()


def simclr_targets(n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """SimCLR's 2N virtual labels (Appendix A.1): anchor i's positive is i + N and vice versa. (2N, 2N)."""
    idx = torch.arange(2 * n, device=device)
    return F.one_hot((idx + n) % (2 * n), 2 * n).float()


def simclr_loss(
    anchors: torch.Tensor,
    candidates: torch.Tensor,
    targets: torch.Tensor | None = None,
    tau: float = 0.2,
    *,
    offset: int = 0,
    check: bool = True,
) -> torch.Tensor:
    """SimCLR's (2N-1)-way NT-Xent loss (Eq. 4) over both views, with 2N virtual labels.

    anchors: (2N, D) = [view 1; view 2] (mixed for i-Mix); candidates: (M, D) clean embeddings,
    M >= 2N, whose rows ``offset ... offset + 2N - 1`` are this batch's clean [view 1; view 2]
    (M = 2N and offset 0 on one process; the same tensor as anchors for the baseline).
    logits_ab = s(a, c_b)/tau with the anchor's own clean slot b = offset + a removed, which turns
    2N candidates into 2N - 1. targets: (2N, M), None = :func:`simclr_targets` (needs M = 2N);
    they must put no mass on the anchor's own slot.
    """
    if check:
        _loss_checks.simclr(anchors, candidates, targets, tau, offset)
    m, k = anchors.shape[0], candidates.shape[0]
    logits = _over_tau(unit(anchors) @ unit(candidates).T, tau)
    self_mask = torch.zeros(m, k, dtype=torch.bool, device=anchors.device)  # each anchor's own clean slot
    self_mask[torch.arange(m, device=anchors.device), torch.arange(m, device=anchors.device) + offset] = True
    logits = logits.masked_fill(self_mask, float("-inf"))
    if targets is None:
        targets = simclr_targets(m // 2, anchors.device)
    # -inf * 0 would be NaN: zero the masked log-probabilities before weighting by targets.
    log_prob = F.log_softmax(logits, dim=1).masked_fill(self_mask, 0.0)
    return -(targets * log_prob).sum(dim=1).mean()


def supervised_targets(labels: torch.Tensor, candidate_labels: torch.Tensor | None = None) -> torch.Tensor:
    """Supervised-contrastive virtual labels (Appendix A.2): v_ij = 1 where labels match, rows sum to 1.

    labels: (N,) class ids of the anchors; candidate_labels: (M,) of the candidates (None = labels,
    M = N; all ranks' labels when gathered). Returns (N, M). Both must be integer tensors of
    shape (N,) / (M,): float labels are refused (a NaN label would match nothing, not even itself).
    """
    _loss_checks.supervised(labels, candidate_labels)
    others = labels if candidate_labels is None else candidate_labels
    same = (labels.view(-1, 1) == others.view(1, -1)).float()
    return same / same.sum(dim=1, keepdim=True)
