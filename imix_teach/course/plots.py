"""Figures the notebooks share: results of baseline vs i-Mix, loss curves, embeddings, image grids."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes

from .. import tables
from ..engine import RunResult


def _label(r: RunResult) -> str:
    return f"{r.method}{' + i-Mix' if r.alpha is not None else ''}"


def mean_std(results: Sequence[RunResult], metric: str = "linear") -> dict[tuple[str, bool], tuple[float, float, int]]:
    """(method, i-Mix on?) -> (mean, std, number of seeds) of ``metric`` in percent (:func:`imix_teach.tables.mean_std`)."""
    groups: dict[tuple[str, bool], list[float]] = defaultdict(list)
    for r in results:
        value = getattr(r, metric)
        if value is not None:
            groups[(r.method, r.alpha is not None)].append(100 * value)
    return {k: (*tables.mean_std(v), len(v)) for k, v in groups.items()}


def results_table(results: Sequence[RunResult], metrics: Sequence[str] = ("linear", "knn")) -> str:
    """Markdown table: one row per method, baseline and i-Mix columns per metric (mean ± std %)."""
    stats = {m: mean_std(results, m) for m in metrics}
    methods = list(dict.fromkeys(r.method for r in results))
    head = "| method | " + " | ".join(f"{m} baseline | {m} i-Mix" for m in metrics) + " | seeds |"
    lines = [head, "|" + "---|" * (2 * len(metrics) + 2)]
    for method in methods:
        cells = []
        for m in metrics:
            for on in (False, True):
                mu, sd, k = stats[m].get((method, on), (float("nan"), 0.0, 0))
                cells.append(f"{mu:.1f} ± {sd:.1f}" if k > 1 else f"{mu:.1f}")
        seeds = max(stats[metrics[0]].get((method, on), (0, 0, 0))[2] for on in (False, True))
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {seeds} |")
    return "\n".join(lines)


def plot_comparison(results: Sequence[RunResult], metric: str = "linear", ax: Axes | None = None,
                    title: str | None = None) -> Axes:
    """Grouped bars: per method, baseline (light) vs i-Mix (dark), mean ± std over seeds."""
    stats = mean_std(results, metric)
    methods = list(dict.fromkeys(r.method for r in results))
    if ax is None:
        _, ax = plt.subplots(figsize=(1.6 * len(methods) + 2, 3.2))
    width = 0.38
    for j, on in enumerate((False, True)):
        xs, mus, sds = [], [], []
        for k, method in enumerate(methods):
            if (method, on) in stats:
                mu, sd, _ = stats[(method, on)]
                xs.append(k + (j - 0.5) * width)
                mus.append(mu)
                sds.append(sd)
        ax.bar(xs, mus, width, yerr=sds, capsize=3, color="tab:orange" if on else "tab:blue",
               alpha=0.9 if on else 0.6, label="i-Mix" if on else "baseline")
        for x, mu in zip(xs, mus):
            ax.text(x, mu + 0.5, f"{mu:.1f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(methods)), methods)
    values = [v[0] for v in stats.values()]
    if values:
        ax.set_ylim(max(0.0, min(values) - 15), min(100.0, max(values) + 8))
    ax.set(ylabel=f"{metric} top-1 (%)", title=title or f"{metric} accuracy: baseline vs i-Mix")
    ax.legend(fontsize=8, loc="lower right")
    return ax


def plot_points(results: Sequence[RunResult], metric: str = "linear", ax: Axes | None = None,
                reference: Sequence[RunResult] = (), title: str | None = None) -> Axes:
    """Per method, baseline and i-Mix as a dot at the mean with a mean ± std bar, each seed a grey dot, on the
    whole 0-100 % axis (no zoom that would magnify small gaps); ``reference`` runs (e.g. a never-trained
    encoder) as a dashed line at their mean with a band of ± one std."""
    stats = mean_std(results, metric)
    methods = list(dict.fromkeys(r.method for r in results))
    if ax is None:
        _, ax = plt.subplots(figsize=(1.6 * len(methods) + 2, 3.2))
    ref = [100 * getattr(r, metric) for r in reference if getattr(r, metric) is not None]
    if ref:
        mu, sd = tables.mean_std(ref)
        ax.axhspan(mu - sd, mu + sd, color="grey", alpha=0.2, lw=0)
        ax.axhline(mu, color="grey", ls="--", lw=1, label=f"{reference[0].method} ({mu:.1f})")
    for j, on in enumerate((False, True)):
        label = "i-Mix" if on else "baseline"
        for k, method in enumerate(methods):
            if (method, on) not in stats:
                continue
            x = k + (j - 0.5) * 0.38
            mu, sd, _ = stats[(method, on)]
            seeds = [100 * getattr(r, metric) for r in results
                     if (r.method, r.alpha is not None) == (method, on) and getattr(r, metric) is not None]
            ax.scatter([x + 0.08] * len(seeds), seeds, s=6, color="grey", zorder=3)
            ax.errorbar([x], [mu], yerr=[sd], fmt="o", ms=5, capsize=3, color="tab:orange" if on else "tab:blue",
                        label=label)
            label = None  # one legend entry per variant
    ax.set_xticks(range(len(methods)), methods)
    ax.set_xlim(-0.6, len(methods) - 0.4)
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.set(ylabel=f"{metric} top-1 (%)", title=title or f"{metric} accuracy: baseline vs i-Mix, mean ± std")
    ax.legend(fontsize=7, loc="lower right")
    return ax


def plot_histories(results: Sequence[RunResult], ax: Axes | None = None, per: str = "epoch") -> Axes:
    """Pretraining loss per epoch (or per logged step with ``per='step'``); i-Mix solid, baseline dashed."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.2))
    colours = {}
    for r in results:
        c = colours.setdefault(r.method, plt.get_cmap("tab10").colors[len(colours) % 10])
        ys = r.history.epoch_loss if per == "epoch" else r.history.loss
        xs = range(1, len(ys) + 1) if per == "epoch" else r.history.step
        ax.plot(list(xs), ys, color=c, ls="-" if r.alpha is not None else "--", label=_label(r))
    ax.set(xlabel=per, ylabel="pretraining loss", title="Loss (i-Mix solid, baseline dashed)")
    ax.legend(fontsize=7)
    return ax


def plot_embeddings(features: torch.Tensor, labels: torch.Tensor, ax: Axes | None = None, title: str = "",
                    method: str = "pca", classes: Sequence[str] | None = None, seed: int = 0) -> Axes:
    """2-D view of (N, D) features coloured by label: PCA (fast, linear) or t-SNE (local structure)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = features.detach().float().cpu().numpy()
    if method == "pca":
        xy = PCA(2, random_state=seed).fit_transform(x)
    elif method == "tsne":
        xy = TSNE(2, init="pca", random_state=seed, perplexity=min(30, max(5, len(x) // 10))).fit_transform(x)
    else:
        raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    y = labels.cpu().numpy()
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=y, cmap="tab10", s=6, alpha=0.8)
    ax.set(xticks=[], yticks=[], title=title or f"embeddings ({method})")
    if classes is not None and len(classes) <= 12:
        handles = [plt.Line2D([], [], marker="o", ls="", color=sc.cmap(sc.norm(i)), label=c) for i, c in enumerate(classes)]
        ax.legend(handles=handles, fontsize=6, loc="best", markerscale=0.8)
    return ax


def image_grid(images: torch.Tensor, nrow: int = 8, ax: Axes | None = None, title: str = "") -> Axes:
    """Show (N, C, H, W) images (uint8, or float of any range: each is min-max scaled) in a grid."""
    from torchvision.utils import make_grid

    x = images.detach().float().cpu()
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    grid = make_grid((x - lo) / (hi - lo).clamp_min(1e-8), nrow=nrow, padding=1, pad_value=1.0)
    if ax is None:
        _, ax = plt.subplots(figsize=(min(12, nrow * 0.9), max(1.2, 0.9 * ((len(x) + nrow - 1) // nrow))))
    ax.imshow(grid.permute(1, 2, 0).numpy() if grid.shape[0] == 3 else grid[0].numpy(), cmap="gray" if x.shape[1] == 1 else None)
    ax.set(xticks=[], yticks=[], title=title)
    return ax
