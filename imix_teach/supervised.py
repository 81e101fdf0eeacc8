"""Supervised MixUp (Sec. 3.1, Eq. 1-2) for notebook 01: a classifier trained by the library's loop, and calibration.

:func:`train_classifier` trains a SmallConvNet + linear layer with :func:`~imix_teach.train.pretrain`
(a :class:`MixUpClassifier` is a method with one view: SGD, cosine schedule, the library's
:func:`~imix_teach.losses.soft_cross_entropy` on MixUp-mixed one-hot labels).
Calibration: :func:`expected_calibration_error`, :func:`reliability_bins`, :func:`reliability_diagram`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from . import _checks
from .data.augment import NoAugment
from .data.base import DomainData, Transformer
from .losses import soft_cross_entropy
from .mixing import imix
from .models import SmallConvNet
from .run_config import Mixing, Optim, Runtime
from .train import Augment, pretrain

if TYPE_CHECKING:  # types only: matplotlib is imported where a plot is drawn
    from matplotlib.axes import Axes

    from .data import ImageAugment


# ----------------------------------------------------------------------------- calibration
@torch.no_grad()
def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """ECE (Guo et al., 2017): sum_b |B_b|/n * |accuracy(B_b) - confidence(B_b)| over confidence bins.

    probs: (n, C) predicted class probabilities; labels: (n,) true classes. Confidence = max prob.
    Bins are equal-width on [0, 1]. Returns a number in [0, 1] (0 = perfectly calibrated).
    """
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == labels).float()
    edges = torch.linspace(0, 1, n_bins + 1)
    ece = torch.zeros(())
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            gap = (correct[in_bin].mean() - confidence[in_bin].mean()).abs()
            ece += in_bin.float().mean() * gap
    return float(ece)


@torch.no_grad()
def reliability_bins(probs: torch.Tensor, labels: torch.Tensor,
                     n_bins: int = 10) -> tuple[list[float], list[float], list[float], list[int]]:
    """Per confidence bin: (bin centres, accuracy, mean confidence, count); empty bins give NaN."""
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == labels).float()
    edges = torch.linspace(0, 1, n_bins + 1)
    acc, conf, count = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > lo) & (confidence <= hi)
        count.append(int(in_bin.sum()))
        acc.append(float(correct[in_bin].mean()) if in_bin.any() else float("nan"))
        conf.append(float(confidence[in_bin].mean()) if in_bin.any() else float("nan"))
    centres = ((edges[:-1] + edges[1:]) / 2).tolist()
    return centres, acc, conf, count


def reliability_diagram(probs: torch.Tensor, labels: torch.Tensor, ax: Axes | None = None, title: str = "",
                        n_bins: int = 10) -> Axes:
    """Bars: accuracy per confidence bin; diagonal: perfect calibration. Gaps below it = overconfidence."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(3.4, 3.4))
    centres, acc, conf, count = reliability_bins(probs, labels, n_bins)
    width = 1.0 / n_bins
    ax.bar(centres, [a if a == a else 0 for a in acc], width=width * 0.95, color="tab:blue", alpha=0.75,
           edgecolor="k", lw=0.4, label="accuracy")
    gaps = [(c, a - c) for c, a in zip(conf, acc) if a == a]
    ax.bar([c for c, _ in gaps], [g for _, g in gaps], bottom=[c for c, _ in gaps], width=width * 0.4,
           color="tab:red", alpha=0.6, label="gap to confidence")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ece = expected_calibration_error(probs, labels)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (max probability)", ylabel="accuracy",
           title=f"{title}\nECE = {100 * ece:.1f}%" if title else f"ECE = {100 * ece:.1f}%")
    ax.legend(fontsize=7, loc="upper left")
    return ax


# ----------------------------------------------------------------------------- supervised training
@dataclass
class SupervisedResult:
    """What :func:`train_classifier` returns (accuracies in [0, 1])."""

    alpha: float | None
    seed: int
    accuracy: float = 0.0
    ece: float = 0.0
    nll: float = 0.0  # test negative log-likelihood (mean cross-entropy with the true labels)
    train_accuracy: float = 0.0  # on clean (unmixed, unaugmented) training images
    seconds: float = 0.0
    epoch_loss: list[float] = field(default_factory=list)
    probs: torch.Tensor | None = field(default=None, repr=False)  # (n_test, C) softmax outputs
    labels: torch.Tensor | None = field(default=None, repr=False)  # (n_test,)


def classifier(in_channels: int, num_classes: int, width: int = 32) -> nn.Sequential:
    """SmallConvNet encoder + linear layer: (N, C, H, W) -> (N, num_classes) logits."""
    encoder = SmallConvNet(in_channels, width)
    return nn.Sequential(encoder, nn.Linear(encoder.out_dim, num_classes))


@torch.no_grad()
def predict_proba(model: nn.Module, inputs: torch.Tensor, transform: Transformer,
                  batch_size: int = 500) -> torch.Tensor:
    """Softmax probabilities (n, C) on CPU, model in eval mode."""
    device = next(model.parameters()).device
    model.eval()
    out = [torch.softmax(model(transform(inputs[i:i + batch_size].to(device))).float(), 1).cpu()
           for i in range(0, inputs.shape[0], batch_size)]
    model.train()
    return torch.cat(out)


class MixUpClassifier(nn.Module):
    """Supervised MixUp (Eq. 2) in the methods' interface, so :func:`~imix_teach.train.train_step` trains it.

    ``loss = model(view, alpha, generator=g, labels=y)``: one view (``views = 1``); with alpha a
    number, inputs and one-hot labels are mixed with one lam ~ Beta(alpha, alpha) and a random
    permutation (:func:`~imix_teach.mixing.imix`); loss = soft cross-entropy of ``net``'s logits.
    """

    name = "mixup"
    views = 1
    needs_labels = True

    def __init__(self, net: nn.Module, num_classes: int):
        super().__init__()
        self.net, self.num_classes = net, _checks.integer("num_classes", num_classes)

    def forward(self, view: torch.Tensor, alpha: float | None = None, *, generator: torch.Generator | None = None,
                labels: torch.Tensor | None = None, check: bool = True, **mix_options: Any) -> torch.Tensor:
        """view (N, ...), labels (N,) class ids -> the mean soft cross-entropy of the (mixed) batch.

        check: also refuse NaN/inf in view and labels out of range (a GPU sync; train_step passes False).
        """
        if labels is None:
            raise ValueError("labels must be given: (N,) class ids of the batch")
        _checks.tensor("view", view, floating=True)
        _checks.labels("labels", labels, view.shape[0] if view.dim() else 0)
        if check:
            _checks.finite("view", view)
            _checks.class_ids("labels", labels, self.num_classes)
        targets = F.one_hot(labels, self.num_classes).float()
        if alpha is not None:
            mixed = imix(view, alpha, targets=targets, generator=generator, check=False, **mix_options)
            view, targets = mixed.inputs, mixed.targets
        return soft_cross_entropy(self.net(view), targets, check=False)

    def after_step(self) -> None:
        """Nothing to update after a step (no EMA, no queue)."""


def train_classifier(
    train: DomainData, test: DomainData, *, alpha: float | None = None, epochs: int = 30, batch_size: int = 128,
    lr: float = 0.1, weight_decay: float = 1e-4, width: int = 32, augment: Augment | None = None, seed: int = 0,
    model: nn.Module | None = None, device: str | torch.device | None = None,
) -> SupervisedResult:
    """Train a classifier on ``train`` (a DomainData) with MixUp when ``alpha`` is a number.

    The library's one loop (:func:`~imix_teach.train.pretrain`) on a :class:`MixUpClassifier`: one
    augmented view of the batch (``augment(x, generator)``, default: the eval transform, i.e. no
    augmentation), MixUp of inputs and one-hot labels, soft cross-entropy, SGD (momentum 0.9,
    Nesterov) with cosine decay and no warm-up, as in the MixUp paper's CIFAR runs (scaled down).
    Same seed -> same initial weights and batch order with and without MixUp.
    """
    torch.manual_seed(seed)
    net = model if model is not None else classifier(train.input_shape[0], train.num_classes, width)
    augment = augment if augment is not None else NoAugment(train.transform)
    tic = time.perf_counter()
    history = pretrain(MixUpClassifier(net, train.num_classes), train.inputs, augment, labels=train.labels, seed=seed,
                       optim=Optim(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                                   warmup_epochs=0, nesterov=True),
                       mixing=Mixing(alpha=alpha), runtime=Runtime(device=device and str(device), progress=False))
    result = SupervisedResult(alpha, seed, seconds=time.perf_counter() - tic, epoch_loss=history.epoch_loss)
    return _score(net, train, test, result)


def _score(net: nn.Module, train: DomainData, test: DomainData, result: SupervisedResult) -> SupervisedResult:
    """Test accuracy, calibration error and NLL, and clean training accuracy, into ``result``."""
    probs = predict_proba(net, test.inputs, test.transform)
    result.probs, result.labels = probs, test.labels
    result.accuracy = float((probs.argmax(1) == test.labels).float().mean())
    result.ece = expected_calibration_error(probs, test.labels)
    result.nll = float(F.nll_loss(probs.clamp_min(1e-12).log(), test.labels))
    train_probs = predict_proba(net, train.inputs, train.transform)
    result.train_accuracy = float((train_probs.argmax(1) == train.labels).float().mean())
    return result


def supervised_augment(data: DomainData, scale: tuple[float, float] = (0.6, 1.0)) -> ImageAugment:
    """Standard supervised augmentation for a DomainData image set: random crop + flip, no colour.

    (The dataset's own ``augment`` is SimCLR's strong contrastive recipe; supervised MixUp
    papers use only crop + flip.) Digits get no flip: they are not mirror-symmetric.
    """
    from .data import ImageAugment

    flip = 0.0 if data.name == "digits" else 0.5
    size = tuple(data.input_shape[1:])
    tf = data.transformer
    return ImageAugment(size, tf.mean, tf.std, scale=scale, flip=flip, jitter_p=0.0, gray_p=0.0)
