"""Input checks of :mod:`imix_teach.losses`, one function per loss: each ValueError names the argument.

Kept apart so a loss's body is its equation. They run only with ``check=True`` (the default for
users); the methods' hot path passes ``check=False`` because ``isfinite(...).all()`` syncs the GPU.
"""
from __future__ import annotations

import torch

from . import _checks


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> None:
    _checks.embeddings("logits", logits)
    _checks.batch_size("logits", logits.shape[0], 1)
    _checks.finite("logits", logits)
    _checks.tensor("targets", targets)
    if targets.dim() == 1:
        _checks.class_ids("targets", targets, logits.shape[1])
        if targets.shape[0] != logits.shape[0]:
            raise ValueError(f"targets must have shape ({logits.shape[0]},) to match logits, got {tuple(targets.shape)}")
    else:
        _checks.simplex_rows("targets", targets, tuple(logits.shape))


def pair(
    name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor, tau: float, min_batch: int = 2,
    more_rows: bool = False,
) -> None:
    """a: (N, D); b: (N, D), or (M, D) with M >= N when ``more_rows`` (gathered across processes)."""
    _checks.positive("tau", tau)
    _checks.embeddings(name_a, a)
    _checks.embeddings(name_b, b)
    _checks.finite(name_a, a)
    _checks.finite(name_b, b)
    _checks.batch_size(name_a, a.shape[0], min_batch)
    rows_ok = b.shape[0] >= a.shape[0] if more_rows else b.shape[0] == a.shape[0]
    if not rows_ok or a.shape[1] != b.shape[1]:
        rows = "(M, D) with M >= N" if more_rows else "(N, D)"
        raise ValueError(
            f"{name_b} must be {rows} to match {name_a} (N, D) = {tuple(a.shape)}, got {tuple(b.shape)}"
        )


def contrast_targets(name: str, targets: torch.Tensor | None, n: int, m: int) -> None:
    """targets (N, M) probability rows; None means eye(N), which needs M == N."""
    if targets is not None:
        _checks.simplex_rows("targets", targets, (n, m))
    elif m != n:
        raise ValueError(
            f"targets=None means the identity, which needs as many {name} as anchors ({n}), got {m}; "
            f"pass targets of shape ({n}, {m}), e.g. imix_teach.distributed.local_targets(None, {n})"
        )


def npair(anchors: torch.Tensor, positives: torch.Tensor, targets: torch.Tensor | None, tau: float) -> None:
    pair("anchors", anchors, "positives", positives, tau, more_rows=True)
    contrast_targets("positives", targets, anchors.shape[0], positives.shape[0])


def moco(queries: torch.Tensor, keys: torch.Tensor, queue: torch.Tensor, targets: torch.Tensor | None,
         tau: float) -> None:
    pair("queries", queries, "keys", keys, tau, more_rows=True)
    _checks.embeddings("queue", queue)
    _checks.finite("queue", queue)
    if queue.shape[1] != queries.shape[1]:
        raise ValueError(f"queue must be (K, {queries.shape[1]}) to match the embedding size, got {tuple(queue.shape)}")
    contrast_targets("keys", targets, queries.shape[0], keys.shape[0])


def byol(predictions: torch.Tensor, target_embeddings: torch.Tensor, targets: torch.Tensor | None) -> None:
    # BYOL has no negatives, so a single pair is a valid batch.
    pair("predictions", predictions, "target_embeddings", target_embeddings, tau=1.0, min_batch=1)
    if targets is not None:
        _checks.simplex_rows("targets", targets, (predictions.shape[0], predictions.shape[0]))


def simclr(anchors: torch.Tensor, candidates: torch.Tensor, targets: torch.Tensor | None, tau: float,
           offset: int) -> None:
    pair("anchors", anchors, "candidates", candidates, tau, more_rows=True)
    m, k = anchors.shape[0], candidates.shape[0]
    if m % 2 or m < 4:
        raise ValueError(f"anchors must stack two views of N >= 2 instances, (2N, D); got {m} rows "
                         "(one pair has no negatives, so its loss would be 0)")
    if not 0 <= offset <= k - m:
        raise ValueError(f"offset must place the batch's {m} rows inside candidates ({k} rows), got {offset}")
    if targets is None and (k != m or offset):
        raise ValueError(f"targets=None needs candidates of shape ({m}, D) and offset 0; pass targets ({m}, {k})")
    if targets is not None:
        _checks.simplex_rows("targets", targets, (m, k))
        if bool(targets[torch.arange(m), torch.arange(m) + offset].abs().sum() > 0):
            raise ValueError("targets must put zero mass on the anchor's own slot (an anchor is not its own positive)")


def tau_fits(tau: float, logits_dtype: torch.dtype, rows: int) -> None:
    """cos / tau in ``logits_dtype``, and the loss of ``rows`` rows (each up to 2 / tau), must stay finite.

    Reads only Python numbers and metadata, so the losses run it on the hot path too. A tensor
    tau is left to :func:`_checks.positive` (reading it here would sync a GPU).
    """
    if torch.is_tensor(tau):
        return
    largest = torch.finfo(logits_dtype).max
    smallest = 4 * max(rows, 1) / largest
    if tau < smallest:
        raise ValueError(
            f"tau must be >= {smallest:.3g} for {rows} rows of {logits_dtype} logits, got {tau!r}: the logits "
            f"cos / tau reach 1 / tau = {1 / tau:.3g} and a batch's loss about 2 * {rows} / tau, past "
            f"{logits_dtype}'s largest value {largest:.3g} (inf, then NaN); use a larger tau or float64 embeddings"
        )


def supervised(labels: torch.Tensor, candidate_labels: torch.Tensor | None) -> None:
    _checks.labels("labels", labels)
    if candidate_labels is not None:
        _checks.labels("candidate_labels", candidate_labels)
