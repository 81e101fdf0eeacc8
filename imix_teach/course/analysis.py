"""Analysis helpers for the later notebooks: how well and why i-Mix generalises.

- :func:`frechet_distance` / :func:`gaussian_frechet_distance`: the Fréchet distance between two
  sets of feature vectors under a Gaussian assumption (Appendix C.3's "FED" between the train
  and test embeddings, with :func:`embedding_frechet_distance`).
- :func:`train_test_gap`: training minus test accuracy of the linear probe (Table C.3).
- :func:`evaluate_encoder`: probe a frozen encoder on another labelled dataset (transfer, subsets).
- :func:`instance_accuracy` and :func:`effective_rank`: is the pretext task trivially solved, and
  how many directions do the features really use (collapse without augmentation, Table 3)?
  :func:`embedding_spread`: how far features are from collapsing to one point (BYOL).
- :func:`view_retrieval_accuracy` and :func:`retrieval_gap`: the pretext task scored on training and
  on unseen images; a growing gap is pretraining memorising its data (App. C's train-test gap).
- :func:`split_classes`: keep some classes of a dataset and renumber them (transfer by class split).
- :func:`sweep`, :func:`summarize`, :func:`sweep_table`, :func:`plot_sweep`: ablations over one
  parameter, baseline vs i-Mix, several seeds, plotted with error bars.
"""
from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from ..evaluate import evaluate_encoder  # one implementation, re-exported for the notebooks
from ..tables import mean_std, ordered

if TYPE_CHECKING:  # types only: matplotlib is imported where a plot is drawn
    from matplotlib.axes import Axes

    from ..data.base import DomainData
    from ..engine import RunResult

_Array = torch.Tensor | np.ndarray  # what the Fréchet functions accept (converted to float64 NumPy)

__all__ = [
    "gaussian_frechet_distance", "frechet_distance", "embedding_frechet_distance", "evaluate_encoder", "train_test_gap",
    "instance_accuracy", "effective_rank", "embedding_spread", "view_retrieval_accuracy", "retrieval_gap",
    "split_classes", "sweep", "summarize", "sweep_table", "plot_sweep",
]


# ----------------------------------------------------------------------------- Fréchet distance
def _as_float64(x: _Array) -> np.ndarray:
    if torch.is_tensor(x):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _sqrtm_psd(cov: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix via its eigendecomposition (tiny negative eigenvalues -> 0)."""
    vals, vecs = np.linalg.eigh((cov + cov.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def gaussian_frechet_distance(mu1: _Array, cov1: _Array, mu2: _Array, cov2: _Array) -> float:
    """Squared 2-Wasserstein (Fréchet) distance between N(mu1, cov1) and N(mu2, cov2).

        d^2 = ||mu1 - mu2||^2 + Tr(cov1 + cov2 - 2 (cov1^{1/2} cov2 cov1^{1/2})^{1/2})

    (the trace term equals Tr(cov1 + cov2 - 2 (cov1 cov2)^{1/2}), the form FID uses). Computed with
    two symmetric eigendecompositions, so it stays real and non-negative where ``scipy.linalg.sqrtm``
    can return complex noise. mu: (D,); cov: (D, D) symmetric PSD.
    """
    mu1, mu2, cov1, cov2 = map(_as_float64, (mu1, mu2, cov1, cov2))
    if mu1.shape != mu2.shape or mu1.ndim != 1:
        raise ValueError(f"mu1 and mu2 must both have shape (D,), got {mu1.shape} and {mu2.shape}")
    d = mu1.shape[0]
    if cov1.shape != (d, d) or cov2.shape != (d, d):
        raise ValueError(f"cov1 and cov2 must have shape ({d}, {d}), got {cov1.shape} and {cov2.shape}")
    root1 = _sqrtm_psd(cov1)
    middle = root1 @ cov2 @ root1
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    value = float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * cross)
    return max(value, 0.0)  # round-off can make identical inputs give -1e-16


def frechet_distance(a: _Array, b: _Array, *, normalize: bool = False) -> float:
    """Fréchet distance between two sets of vectors a (N, D) and b (M, D), each fitted by a Gaussian.

    Means and (unbiased) covariances are estimated from the samples, then
    :func:`gaussian_frechet_distance` is applied. ``normalize=True`` L2-normalises every row first,
    as Appendix C.3 does for embeddings ("FED"). Identical sets give 0.
    """
    a, b = _as_float64(a), _as_float64(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must be (N, D) and (M, D) with the same D, got {a.shape} and {b.shape}")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError(f"a and b need at least 2 rows each to estimate a covariance, got {a.shape[0]} and {b.shape[0]}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("a and b must be finite (no NaN or inf)")
    if normalize:
        a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return gaussian_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def embedding_frechet_distance(encoder: torch.nn.Module, first: DomainData, second: DomainData, *,
                               batch_size: int = 512) -> float:
    """FED of Appendix C.3: Fréchet distance between L2-normalised encoder features of two datasets.

    ``first``/``second`` are :class:`imix_teach.data.DomainData` (e.g. the train and test splits);
    features come from their evaluation ``transform``.
    """
    from ..evaluate import extract_features

    fa = extract_features(encoder, first.inputs, first.transform, batch_size=batch_size)
    fb = extract_features(encoder, second.inputs, second.transform, batch_size=batch_size)
    return frechet_distance(fa, fb, normalize=True)


def train_test_gap(result: RunResult) -> float:
    """Linear-probe accuracy on its own training features minus test accuracy (a RunResult), in [−1, 1]."""
    if result.train_accuracy is None or result.linear is None:
        raise ValueError("the run has no linear probe: evaluate with 'linear' to get train and test accuracy")
    return float(result.train_accuracy - result.linear)


# ----------------------------------------------------------------------------- collapse diagnostics
@torch.no_grad()
def instance_accuracy(first: torch.Tensor, second: torch.Tensor) -> float:
    """The pretext task's top-1: the share of rows i of ``first`` (N, D) whose most cosine-similar row
    of ``second`` (N, D) is row i, i.e. how often the other view of the same instance is recognised."""
    if first.shape != second.shape or first.dim() != 2:
        raise ValueError(f"first and second must both be (N, D), got {tuple(first.shape)} and {tuple(second.shape)}")
    sim = F.normalize(first.float(), dim=1) @ F.normalize(second.float(), dim=1).T
    return float((sim.argmax(1) == torch.arange(first.shape[0])).float().mean())


@torch.no_grad()
def effective_rank(features: torch.Tensor) -> float:
    """exp(entropy) of the normalised singular values of centred (N, D) features (Roy & Vetterli, 2007).

    D for perfectly spread features, 1 when everything lies on one line: a number for "how many
    directions does the representation use", which drops when features collapse.
    """
    x = features.double()
    x = x - x.mean(0, keepdim=True)
    s = torch.linalg.svdvals(x)
    p = s / s.sum().clamp_min(1e-12)
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


@torch.no_grad()
def embedding_spread(features: torch.Tensor) -> float:
    """How far features are from collapse: sqrt(D) * mean per-dimension std of the L2-normalised rows.

    About 1 when the normalised features spread like a uniform distribution on the sphere
    (per-dimension std 1/sqrt(D)), 0 when every input maps to the same direction. (N, D) -> float.
    """
    z = F.normalize(features.float(), dim=1)
    return float(z.std(dim=0).mean() * z.shape[1] ** 0.5)


# ----------------------------------------------------------------------------- pretext over-fitting
@torch.no_grad()
def view_retrieval_accuracy(encoder: torch.nn.Module, data: DomainData, *, batch_size: int = 128, batches: int = 8,
                            seed: int = 0, augment: Callable | None = None) -> float:
    """Share of images whose view 1 has view 2 of the same image as its most similar view 2 in the batch.

    The pretext task of instance discrimination, scored on the encoder's features (cosine similarity)
    over ``batches`` random batches of ``batch_size`` images of ``data`` (a DomainData), each view
    drawn by ``augment(x, generator)`` (default ``data.augment``); encoder in eval mode, its mode is
    restored after. Chance is 1 / batch_size.
    """
    augment = data.augment if augment is None else augment
    g = torch.Generator().manual_seed(seed)
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    try:
        batch_size = min(batch_size, len(data))
        hits, total = 0, 0
        for _ in range(batches):
            idx = torch.randperm(len(data), generator=g)[:batch_size]
            x = data.inputs[idx]
            z1 = encoder(augment(x, g).to(device)).float()
            z2 = encoder(augment(x, g).to(device)).float()
            hits += round(instance_accuracy(z1, z2) * batch_size)
            total += batch_size
        return hits / total
    finally:
        encoder.train(was_training)


def retrieval_gap(encoder: torch.nn.Module, seen: DomainData, unseen: DomainData, **options: Any) -> dict[str, float]:
    """View retrieval on the pretext images (``seen``) and on images the encoder never saw (``unseen``).

    Returns {"retrieval_train", "retrieval_test", "retrieval_gap"} (fractions; gap = train - test).
    A gap that grows with training means the pretext task is being solved by memorising the
    training images rather than by features that generalise: the over-fitting i-Mix regularises.
    ``options`` go to :func:`view_retrieval_accuracy` (batch_size, batches, seed, augment).
    """
    on_train = view_retrieval_accuracy(encoder, seen, **options)
    on_test = view_retrieval_accuracy(encoder, unseen, **options)
    return {"retrieval_train": on_train, "retrieval_test": on_test, "retrieval_gap": on_train - on_test}


def split_classes(data: DomainData, keep: Sequence[int]) -> DomainData:
    """Rows of ``data`` (a DomainData) whose label is in ``keep``, relabelled 0..len(keep)-1 in that order."""
    keep = [int(k) for k in keep]
    if len(set(keep)) != len(keep) or not all(0 <= k < len(data.classes) for k in keep):
        raise ValueError(f"keep must be distinct class ids in [0, {len(data.classes)}), got {keep}")
    mask = torch.zeros(len(data.classes), dtype=torch.bool)
    mask[keep] = True
    idx = mask[data.labels].nonzero().flatten()
    part = data.subset(idx)
    new_id = torch.full((len(data.classes),), -1, dtype=torch.long)
    new_id[keep] = torch.arange(len(keep))
    return replace(part, labels=new_id[part.labels], classes=[data.classes[k] for k in keep])


# ----------------------------------------------------------------------------- sweeps
_METRICS = ("linear", "knn", "least_squares", "train_accuracy", "pretrain_seconds")


def sweep(
    values: Iterable[Any],
    run_one: Callable[[Any, str, int], Any],
    *,
    seeds: Sequence[int] = (0,),
    variants: Sequence[str] = ("baseline", "i-Mix"),
    verbose: bool = True,
) -> list[dict[str, Any]]:
    """Call ``run_one(value, variant, seed)`` for every combination; return one row (dict) per call.

    ``run_one`` returns a :class:`~imix_teach.engine.RunResult` (its metrics are kept) or a
    dict of metrics. Each row holds ``value``, ``variant``, ``seed``, the metrics and ``seconds``.
    ``verbose`` prints one short line per finished run.
    """
    rows = []
    for value in values:
        for variant in variants:
            for seed in seeds:
                tic = time.perf_counter()
                out = run_one(value, variant, seed)
                metrics = dict(out) if isinstance(out, dict) else {k: getattr(out, k, None) for k in _METRICS}
                row = {"value": value, "variant": variant, "seed": seed, **metrics,
                       "seconds": time.perf_counter() - tic}
                rows.append(row)
                if verbose:
                    shown = ", ".join(f"{k} {100 * v:.1f}" for k, v in metrics.items()
                                      if k in ("linear", "knn", "least_squares", "retrieval_gap") and v is not None)
                    print(f"  {value!s:>8} | {variant:<16} | seed {seed} | {shown}")
    return rows


def summarize(rows: Sequence[dict[str, Any]], metric: str = "knn") -> dict[tuple[str, Any], tuple[float, float, int]]:
    """(variant, value) -> (mean, std, n) of ``metric`` in percent over seeds; std uses ddof=1 (0 for one seed)."""
    groups: dict[tuple[str, Any], list[float]] = defaultdict(list)
    for r in rows:
        if r.get(metric) is not None:
            groups[(r["variant"], r["value"])].append(100 * float(r[metric]))
    return {k: (*mean_std(v), len(v)) for k, v in groups.items()}


def sweep_table(rows: Sequence[dict[str, Any]], metric: str = "knn", name: str = "value") -> str:
    """Markdown table: one row per swept value, one column per variant (mean ± std % over seeds), and
    the i-Mix gain when both a "baseline" and an "i-Mix" variant exist."""
    stats = summarize(rows, metric)
    variants = ordered(r["variant"] for r in rows)
    values = ordered(r["value"] for r in rows)
    with_gain = "baseline" in variants and "i-Mix" in variants
    head = f"| {name} | " + " | ".join(variants) + (" | gain (i-Mix - baseline) |" if with_gain else " |")
    lines = [head, "|" + "---|" * (len(variants) + 1 + with_gain)]
    for v in values:
        cells = []
        for var in variants:
            if (var, v) in stats:
                mu, sd, n = stats[(var, v)]
                cells.append(f"{mu:.1f} ± {sd:.1f}" if n > 1 else f"{mu:.1f}")
            else:
                cells.append("")
        if with_gain:
            b, i = stats.get(("baseline", v)), stats.get(("i-Mix", v))
            cells.append(f"{i[0] - b[0]:+.1f}" if b and i else "")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_sweep(rows: Sequence[dict[str, Any]], metric: str = "knn", ax: Axes | None = None, *, xlabel: str = "value",
               title: str | None = None, log_x: bool = False, categorical: bool | None = None) -> Axes:
    """One line per variant: mean ± std (error bars over seeds) of ``metric`` (%) against the swept value.

    Numeric values go on a numeric (optionally log) axis; anything else (e.g. "mixup"/"cutmix")
    on a categorical one. Returns the axes.
    """
    import matplotlib.pyplot as plt

    stats = summarize(rows, metric)
    values = ordered(r["value"] for r in rows)
    if categorical is None:
        categorical = not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 3.0))
    variants = ordered(r["variant"] for r in rows)
    colours = {"baseline": "tab:blue", "i-Mix": "tab:orange"}
    offsets = np.linspace(-0.12, 0.12, len(variants)) if categorical and len(variants) > 1 else [0.0] * len(variants)
    for k, var in enumerate(variants):
        pts = [(v, *stats[(var, v)][:2]) for v in values if (var, v) in stats]
        if not pts:
            continue
        xs = [values.index(v) + offsets[k] for v, _, _ in pts] if categorical else [float(v) for v, _, _ in pts]
        # categories are not ordered: no line between them
        ax.errorbar(xs, [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", ms=4, capsize=3,
                    ls="none" if categorical else "-", color=colours.get(var), label=var)
    if categorical:
        ax.set_xticks(range(len(values)), [str(v) for v in values])
    elif log_x:
        ax.set_xscale("log")
        ax.set_xticks([float(v) for v in values], [f"{v:g}" for v in values])
        ax.minorticks_off()
    ax.set(xlabel=xlabel, ylabel=f"{metric} top-1 (%)", title=title or f"{metric} vs {xlabel}")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return ax
