"""A live i-Mix playground: 2-D toy data, embeddings on the circle, a few seconds per setting on a CPU.

    from imix_teach.course.playground import playground, playground_plot
    playground_plot(imix=True)   # one static figure of the default setting (headless-safe)
    playground()                 # the same behind ipywidgets controls

The toy: points around ``classes`` centres on a ring in the plane; a view is the point plus Gaussian
jitter of std ``jitter`` (the toy's augmentation; 0 = none, both views identical). A small MLP embeds
each point onto the unit circle (2-D projection head, L2-normalised), trained with the library's
N-pair loss, with or without i-Mix. Nothing here is new machinery: :class:`~imix_teach.methods.NPair`,
:func:`~imix_teach.engine.run` and :func:`~imix_teach.evaluate.knn_accuracy` do the work, on data
small enough to retrain on every change.

The default setting (no augmentation, 8 points per class, tau 0.5, alpha 0.2) was chosen after
measuring 20 seeds of a few settings: without augmentation the plain loss has a trivial task and
i-Mix gives it a real one (notebook 07's point); strong mixing (alpha 1) is no better than plain
on the circle, where a mixture of two far-apart points has no room to lie between them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import Augmenter, DomainData
from ..engine import run
from ..evaluate import knn_accuracy
from ..methods import NPair
from ..run_config import Evaluation, Method, Mixing, Optim, RunConfig, Runtime
from ..train import History

# The playground's default setting (see the module docstring for why these values).
ALPHA, TAU, PER_CLASS, JITTER = 0.2, 0.5, 8, 0.0

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
    if scale < 0:
        raise ValueError(f"the jitter's scale must be >= 0 (0 = no augmentation), got {scale}")

    def augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return x + scale * torch.randn(x.shape, generator=generator)  # scale 0: exactly x (same draws either way)

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


def toy_split(per_class: int, classes: int, seed: int, augment: Augmenter) -> DomainData:
    """The toy as a :class:`~imix_teach.data.DomainData`: points (N, 2), their cluster labels, ``augment`` as views."""
    x, y = toy_data(per_class, classes, seed=seed)
    return DomainData("toy", "toy", "train", x, y, [str(c) for c in range(classes)], (2,), augment, lambda v: v)


def train_toy(alpha: float | None = ALPHA, tau: float = TAU, per_class: int = PER_CLASS, *, jitter_std: float = JITTER,
              classes: int = 5, steps: int = 150, seed: int = 0) -> ToyRun:
    """Pretrain N-pair on the toy (with i-Mix when ``alpha`` is a number); about a second on a CPU.

    The library's run (:func:`imix_teach.engine.run`) with the toy encoder and a 2-D head; test
    points: 40 per class from another seed. ``steps`` SGD steps whatever the data size, so that a
    smaller dataset means less data, not less training.
    """
    train = toy_split(per_class, classes, seed, jitter(jitter_std))
    x_test, y_test = toy_data(40, classes, seed=seed + 1000)
    batch = min(64, len(train))
    config = RunConfig(method=Method("npair", tau, options=dict(proj_hidden=64, proj_dim=2)), mixing=Mixing(alpha=alpha),
                       optim=Optim(epochs=max(1, round(steps / (len(train) // batch))), batch_size=batch, lr=0.5),
                       runtime=Runtime(device="cpu", progress=False, log_every=1), evaluation=Evaluation(probes=()),
                       seed=seed)
    torch.manual_seed(seed)
    result = run(config, train, encoder=ToyEncoder())
    method = result.model.eval()
    with torch.no_grad():
        z, z_test = F.normalize(method.embed(train.inputs), dim=1), F.normalize(method.embed(x_test), dim=1)
    knn = knn_accuracy(z, train.labels, z_test, y_test, k=min(10, len(train)))
    return ToyRun(method, result.history, torch.atan2(z[:, 1], z[:, 0]), torch.atan2(z_test[:, 1], z_test[:, 0]), knn)


def playground_plot(imix: bool = True, alpha: float = ALPHA, tau: float = TAU, per_class: int = PER_CLASS,
                    jitter_std: float = JITTER, seed: int = 0) -> Figure:
    """Train one toy run and draw it: the data, the embeddings on the circle, the loss; returns the figure."""
    import matplotlib.pyplot as plt

    classes = 5
    run = train_toy(alpha if imix else None, tau, per_class, jitter_std=jitter_std, classes=classes, seed=seed)
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
    views = f"jitter {jitter_std:g}" if jitter_std else "no augmentation"
    ax_loss.set(title=f"N-pair loss: {label}, tau = {tau:g},\n{views}", xlabel="step", ylabel="loss")
    fig.tight_layout()
    return fig


def playground() -> interactive:
    """ipywidgets controls for :func:`playground_plot`: i-Mix on/off, alpha, tau, data size, augmentation, seed."""
    import ipywidgets as widgets

    from .widgets import interact

    return interact(
        playground_plot,
        imix=widgets.Checkbox(value=True, description="i-Mix"),
        alpha=widgets.FloatLogSlider(value=ALPHA, base=10, min=-1, max=1, step=0.1, description="alpha",
                                     continuous_update=False),
        tau=widgets.FloatLogSlider(value=TAU, base=10, min=-1.5, max=0, step=0.1, description="tau",
                                   continuous_update=False),
        per_class=widgets.IntSlider(value=PER_CLASS, min=2, max=60, step=2, description="per class",
                                    continuous_update=False),
        jitter_std=widgets.FloatSlider(value=JITTER, min=0.0, max=0.6, step=0.05, description="jitter",
                                       continuous_update=False),
        seed=widgets.IntSlider(value=0, min=0, max=9, description="seed", continuous_update=False),
    )
