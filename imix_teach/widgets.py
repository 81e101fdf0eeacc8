"""The course's three interactive demos: alpha, lam and tau.

Each demo is a plain plotting function (runs headless, e.g. under nbval) plus a ``*_widget``
wrapper that puts it behind core ipywidgets sliders with ``continuous_update=False``:

    beta_plot(alpha=1.0)          # Beta(alpha, alpha): density and sampled lam
    alpha_widget()
    imix_plot(images, lam=0.6)    # mixed inputs and the mixed virtual-label matrix, side by side
    lam_widget(images)
    temperature_plot(tau=0.2)     # softmax sharpness and the N-pair loss against tau
    tau_widget()
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch

from .losses import npair_loss
from .mixing import mix_targets, mixup, sample_lambda


def _to_display(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) uint8 or float -> float in [0, 1] per image (min-max), for imshow."""
    x = images.detach().float().cpu()
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-8)


def _imshow(ax, image: torch.Tensor) -> None:
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1))
    ax.set_xticks([])
    ax.set_yticks([])


def beta_plot(alpha: float = 1.0, n_samples: int = 4000, seed: int = 0):
    """Density of Beta(alpha, alpha) with a histogram of ``sample_lambda`` draws; returns the figure."""
    lam = sample_lambda(alpha, n_samples, generator=torch.Generator().manual_seed(seed))
    grid = torch.linspace(0.002, 0.998, 400, dtype=torch.float64)
    log_norm = 2 * math.lgamma(alpha) - math.lgamma(2 * alpha)
    density = torch.exp((alpha - 1) * (grid.log() + (1 - grid).log()) - log_norm)
    fig, ax = plt.subplots(figsize=(5.5, 3.0))
    ax.hist(lam.numpy(), bins=40, range=(0, 1), density=True, alpha=0.45, label=f"{n_samples} draws of lam")
    ax.plot(grid.numpy(), density.numpy(), lw=2, label=f"Beta({alpha:g}, {alpha:g}) density")
    ax.set(xlabel="lam", ylabel="density", title=f"alpha = {alpha:g}: mean |lam - 0.5| = {float((lam - 0.5).abs().mean()):.2f}")
    ax.set_ylim(0, min(6.0, max(2.0, float(density.max()) * 1.1)))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def imix_plot(images: torch.Tensor, lam: float = 0.6, seed: int = 0, n_show: int = 6):
    """i-Mix on a real batch: the mixed inputs (left) and their virtual labels (right).

    images: (N, C, H, W) raw batch (uint8 or float), N >= 2. Row i of the label matrix is
    lam * e_i + (1 - lam) * e_perm(i): where instance i's "class probability" goes.
    """
    n = images.shape[0]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    x = _to_display(images)
    mixed = mixup(x, lam, perm)
    targets = mix_targets(torch.eye(n), lam, perm)
    k = min(n_show, n)
    fig = plt.figure(figsize=(9, 3.3))
    grid = fig.add_gridspec(3, k + 4)
    for i in range(k):
        for row, (img, label) in enumerate(((x[i], f"x_{i}"), (x[perm[i]], f"x_{int(perm[i])}"), (mixed[i], "mixed"))):
            ax = fig.add_subplot(grid[row, i])
            _imshow(ax, img)
            if i == 0 or row < 2:
                ax.set_title(label, fontsize=7)
    ax = fig.add_subplot(grid[:, k + 1:])
    im = ax.imshow(targets.numpy(), cmap="magma", vmin=0, vmax=1)
    ax.set(title=f"virtual labels, lam = {lam:.2f}", xlabel="instance (class)", ylabel="anchor")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def temperature_plot(tau: float = 0.2, similarities: tuple[float, ...] = (0.9, 0.6, 0.3, 0.0, -0.3), n: int = 16, seed: int = 0):
    """Left: softmax(s / tau) over an anchor's similarities (first = positive). Right: N-pair loss vs tau.

    The loss curve uses a random batch of N embedding pairs whose positives are noisy copies of
    the anchors, so it shows how tau trades off hard negatives against the positive.
    """
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    s = torch.tensor(similarities)
    probs = torch.softmax(s / tau, dim=0)
    g = torch.Generator().manual_seed(seed)
    anchors = torch.randn(n, 16, generator=g)
    positives = anchors + 0.8 * torch.randn(n, 16, generator=g)
    taus = torch.logspace(-2, 0.5, 40)
    curve = [float(npair_loss(anchors, positives, tau=float(t))) for t in taus]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.0))
    colours = ["tab:green"] + ["tab:gray"] * (len(s) - 1)
    ax1.bar([f"{v:+.1f}" for v in similarities], probs.numpy(), color=colours)
    ax1.set(xlabel="cosine similarity (first bar = positive)", ylabel="softmax probability",
            title=f"tau = {tau:g}: positive gets {float(probs[0]):.2f}")
    ax1.set_ylim(0, 1)
    ax2.semilogx(taus.numpy(), curve)
    ax2.axvline(tau, color="tab:red", ls="--")
    ax2.set(xlabel="tau", ylabel="N-pair loss", title=f"loss at tau = {tau:g}: {float(npair_loss(anchors, positives, tau=tau)):.3f}")
    fig.tight_layout()
    return fig


def _interact(fn, **sliders):
    import ipywidgets as widgets
    from IPython.display import display

    def draw(**kwargs):
        fig = fn(**kwargs)
        display(fig)
        plt.close(fig)

    return widgets.interactive(draw, **sliders)


def alpha_widget():
    """Slider over alpha (log scale) for :func:`beta_plot`."""
    import ipywidgets as widgets

    return _interact(beta_plot, alpha=widgets.FloatLogSlider(value=1.0, base=10, min=-1.3, max=1.3, step=0.05,
                                                             description="alpha", continuous_update=False))


def lam_widget(images: torch.Tensor, seed: int = 0):
    """Slider over lam for :func:`imix_plot` on ``images`` (N, C, H, W)."""
    import ipywidgets as widgets

    return _interact(lambda lam: imix_plot(images, lam, seed),
                     lam=widgets.FloatSlider(value=0.6, min=0.0, max=1.0, step=0.05, description="lam",
                                             continuous_update=False))


def tau_widget():
    """Slider over tau (log scale) for :func:`temperature_plot`."""
    import ipywidgets as widgets

    return _interact(temperature_plot, tau=widgets.FloatLogSlider(value=0.2, base=10, min=-2, max=0.5, step=0.05,
                                                                  description="tau", continuous_update=False))
