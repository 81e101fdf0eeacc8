"""A live i-Mix playground: 2-D toy data, embeddings on the circle, a few seconds per setting on a CPU.

    from imix_teach.playground import playground, playground_plot
    playground_plot(imix=True, alpha=1.0, tau=0.2, per_class=10)   # one static figure (headless-safe)
    playground()                                                   # the same behind ipywidgets controls

The toy: points around ``classes`` centres on a ring in the plane; a view is the point plus Gaussian
jitter (the toy's augmentation). A small MLP embeds each point onto the unit circle (2-D projection
head, L2-normalised), trained with the library's N-pair loss, with or without i-Mix. Nothing here is
new machinery: :class:`~imix_teach.methods.NPair`, :func:`~imix_teach.train.pretrain` and
:func:`~imix_teach.evaluate.knn_accuracy` do the work, on data small enough to retrain on every change.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .data.base import Augmenter
from .evaluate import knn_accuracy
from .methods import NPair
from .train import History, pretrain

if TYPE_CHECKING:  # types only: matplotlib and ipywidgets are imported when a figure or widget is built
    from ipywidgets import interactive
    from matplotlib.figure import Figure


def toy_data(per_class: int = 10, classes: int = 5, spread: float = 0.5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``classes`` Gaussian clusters (std ``spread``) centred on a ring of radius 2: x (N, 2), y (N,)."""
    if per_class < 1 or classes < 2:
        raise ValueError(f"per_class must be >= 1 and classes >= 2, got {per_class} and {classes}")
    g = torch.Generator().manual_seed(seed)
    angles = 2 * math.pi * torch.arange(classes) / classes
    centres = 2.0 * torch.stack([angles.cos(), angles.sin()], dim=1)
    y = torch.arange(classes).repeat_interleave(per_class)
    return centres[y] + spread * torch.randn(len(y), 2, generator=g), y


def jitter(scale: float = 0.3) -> Augmenter:
    """The toy's augmentation: ``x + scale * N(0, I)`` per view, drawn from the generator."""

    def augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return x + scale * torch.randn(x.shape, generator=generator)

    return augment


class ToyEncoder(nn.Sequential):
    """(N, 2) points -> (N, width) features: Linear-ReLU-Linear-ReLU."""

    def __init__(self, width: int = 64):
        super().__init__(nn.Linear(2, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU())
        self.out_dim = width


@dataclass
class ToyRun:
    """One playground run: the trained method, its loss history, circle angles and kNN accuracy."""

    method: NPair
    history: History
    train_angle: torch.Tensor  # (N,) angle of each training point's embedding on the unit circle
    test_angle: torch.Tensor
    knn: float  # kNN top-1 on the test points, from the circle embeddings


def train_toy(alpha: float | None = 1.0, tau: float = 0.2, per_class: int = 10, *, classes: int = 5,
              steps: int = 150, seed: int = 0) -> ToyRun:
    """Pretrain N-pair on the toy (with i-Mix when ``alpha`` is a number); about a second on a CPU.

    Test points: 40 per class from another seed. ``steps`` SGD steps whatever the data size, so
    that a smaller dataset means less data, not less training.
    """
    x, y = toy_data(per_class, classes, seed=seed)
    x_test, y_test = toy_data(40, classes, seed=seed + 1000)
    torch.manual_seed(seed)
    method = NPair(ToyEncoder(), proj_hidden=64, proj_dim=2, tau=tau)
    batch = min(64, len(x))
    epochs = max(1, round(steps / (len(x) // batch)))
    history = pretrain(method, x, jitter(), epochs=epochs, batch_size=batch, alpha=alpha, lr=0.5, seed=seed,
                       device="cpu", progress=False, log_every=1)
    method.eval()
    with torch.no_grad():
        z, z_test = F.normalize(method.embed(x), dim=1), F.normalize(method.embed(x_test), dim=1)
    knn = knn_accuracy(z, y, z_test, y_test, k=min(10, len(x)))
    return ToyRun(method, history, torch.atan2(z[:, 1], z[:, 0]), torch.atan2(z_test[:, 1], z_test[:, 0]), knn)


def playground_plot(imix: bool = True, alpha: float = 1.0, tau: float = 0.2, per_class: int = 10,
                    seed: int = 0) -> Figure:
    """Train one toy run and draw it: the data, the embeddings on the circle, the loss; returns the figure."""
    import matplotlib.pyplot as plt

    classes = 5
    run = train_toy(alpha if imix else None, tau, per_class, classes=classes, seed=seed)
    x, y = toy_data(per_class, classes, seed=seed)
    x_test, y_test = toy_data(40, classes, seed=seed + 1000)
    colours = plt.get_cmap("tab10")
    fig, (ax_data, ax_circle, ax_loss) = plt.subplots(1, 3, figsize=(11, 3.5))
    ax_data.scatter(x_test[:, 0].numpy(), x_test[:, 1].numpy(), c=colours(y_test.numpy()), s=6, alpha=0.3)
    ax_data.scatter(x[:, 0].numpy(), x[:, 1].numpy(), c=colours(y.numpy()), s=22, edgecolor="k", lw=0.5)
    ax_data.set(title=f"data: {len(x)} training points (ringed),\ntest points faint", aspect="equal")
    circle = torch.linspace(0, 2 * math.pi, 200)
    ax_circle.plot(circle.cos().numpy(), circle.sin().numpy(), color="lightgray", lw=1)
    for radius, angle, labels, size in ((1.0, run.train_angle, y, 22), (0.8, run.test_angle, y_test, 6)):
        ax_circle.scatter((radius * angle.cos()).numpy(), (radius * angle.sin()).numpy(), c=colours(labels.numpy()), s=size,
                          edgecolor="k" if size > 10 else "none", lw=0.5)
    ax_circle.set(title=f"embeddings (outer: train, inner: test)\nkNN test accuracy {100 * run.knn:.0f}%",
                  aspect="equal", xlim=(-1.2, 1.2), ylim=(-1.2, 1.2), xticks=[], yticks=[])
    ax_loss.plot(run.history.step, run.history.loss, color="tab:orange" if imix else "tab:blue")
    label = f"i-Mix, alpha = {alpha:g}" if imix else "no i-Mix"
    ax_loss.set(title=f"N-pair loss ({label}, tau = {tau:g})", xlabel="step", ylabel="loss")
    fig.tight_layout()
    return fig


def playground() -> interactive:
    """ipywidgets controls for :func:`playground_plot`: i-Mix on/off, alpha, tau, data size, seed."""
    import ipywidgets as widgets

    from .widgets import _interact

    return _interact(
        playground_plot,
        imix=widgets.Checkbox(value=True, description="i-Mix"),
        alpha=widgets.FloatLogSlider(value=1.0, base=10, min=-1, max=1, step=0.1, description="alpha",
                                     continuous_update=False),
        tau=widgets.FloatLogSlider(value=0.2, base=10, min=-1.5, max=0, step=0.1, description="tau",
                                   continuous_update=False),
        per_class=widgets.IntSlider(value=10, min=2, max=60, step=2, description="per class",
                                    continuous_update=False),
        seed=widgets.IntSlider(value=0, min=0, max=9, description="seed", continuous_update=False),
    )
