"""Evaluating a frozen encoder: features once, then cheap classifiers on them.

- :func:`extract_features`: encoder in eval mode, no gradients, (N, ...) -> (N, D) on CPU.
- :func:`linear_probe`: the paper's protocol (SGD momentum 0.9, batch 256, 100 epochs, no weight
  decay, lr from a small grid, decayed x0.2 at 80/90/95 % of training) on standardised features.
- :func:`knn_accuracy`: weighted cosine kNN (weights exp(s / T), as in Wu et al. 2018).
- :func:`least_squares_accuracy`: the closed-form pseudo-inverse classifier used for Higgs.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import _checks
from .config import pick_device
from .data.base import DomainData
from .models import parameter_dtype


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    inputs: torch.Tensor,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    *,
    batch_size: int = 512,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Encode ``inputs`` (N, ...) with ``transform`` applied per batch; returns (N, D) float32 on CPU.

    Floating-point batches are cast to the encoder's dtype (float64 features of a float32 encoder).
    """
    _checks.tensor("inputs", inputs)
    _checks.integer("batch_size", batch_size)
    if inputs.dim() < 1 or inputs.shape[0] == 0:
        raise ValueError(f"inputs must be a non-empty batch (N, ...), got shape {tuple(inputs.shape)}")
    device = pick_device(device) if device is not None else next(encoder.parameters()).device
    dtype = parameter_dtype(encoder)
    was_training = encoder.training
    encoder.eval()
    try:
        feats = []
        for start in range(0, inputs.shape[0], batch_size):
            x = inputs[start:start + batch_size].to(device)
            if transform is not None:
                x = transform(x)
            if x.is_floating_point() and dtype is not None:  # a float64 batch meets a float32 encoder
                x = x.to(dtype)
            feats.append(encoder(x).float().cpu())
        return torch.cat(feats)
    finally:
        encoder.train(was_training)


def _check_split(train_x, train_y, test_x, test_y) -> None:
    for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        _checks.tensor(f"{name}_x", x, floating=True)
        _checks.tensor(f"{name}_y", y)
        if x.dim() != 2 or y.dim() != 1 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"{name}_x must be (N, D) and {name}_y (N,), got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        if x.shape[0] == 0:
            raise ValueError(f"{name}_x is empty: evaluation needs at least one {name} example")
        if y.is_floating_point() or y.dtype == torch.bool or bool((y < 0).any()):
            raise ValueError(f"{name}_y must hold integer class ids >= 0, got dtype {y.dtype}, min {y.min().item()}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name}_x contains NaN or inf (did pretraining diverge?)")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train_x and test_x must share the feature size, got {train_x.shape[1]} and {test_x.shape[1]}")


@dataclass
class ProbeResult:
    accuracy: float  # test top-1, in [0, 1]
    train_accuracy: float
    lr: float  # chosen on a held-out part of the training features


def _train_linear(x, y, num_classes, lr, epochs, batch_size, seed, device) -> nn.Linear:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    layer = nn.Linear(x.shape[1], num_classes).to(device)
    opt = torch.optim.SGD(layer.parameters(), lr=lr, momentum=0.9)
    milestones = [int(epochs * f) for f in (0.8, 0.9, 0.95)]
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=0.2)
    x, y = x.to(device), y.to(device)
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=g).to(device)
        for start in range(0, x.shape[0], batch_size):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(layer(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    return layer


@torch.no_grad()
def _accuracy(layer: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    device = next(layer.parameters()).device
    return float((layer(x.to(device)).argmax(1).cpu() == y).float().mean())


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    epochs: int = 100,
    batch_size: int = 256,
    lrs: Sequence[float] = (0.01, 0.1, 1.0),
    val_fraction: float = 0.2,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> ProbeResult:
    """Train a linear classifier on frozen features (N, D) and report test accuracy.

    Features are standardised with training statistics (an affine map the linear layer could
    learn itself; it makes one lr grid fit every encoder). The lr is chosen on a held-out
    ``val_fraction`` of the training set, then the layer is retrained on all training features.
    """
    _check_split(train_x, train_y, test_x, test_y)
    _checks.integer("epochs", epochs)
    _checks.integer("batch_size", batch_size)
    _checks.integer("seed", seed, 0, _checks.SEED_MAX)
    if isinstance(lrs, (str, bytes)) or not isinstance(lrs, Sequence) or not lrs:
        raise ValueError(f"lrs must be a non-empty sequence of learning rates, e.g. (0.01, 0.1, 1.0), got {lrs!r}")
    for lr in lrs:
        _checks.positive("lrs entries", lr)
    if len(lrs) > 1 and (not 0 < val_fraction < 1 or train_x.shape[0] < 2):
        raise ValueError(f"choosing among lrs needs val_fraction in (0, 1) and >= 2 training rows, got "
                         f"val_fraction={val_fraction!r} with {train_x.shape[0]} rows; or pass a single lr")
    device = pick_device(device)
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    best_lr = lrs[0]
    if len(lrs) > 1:
        order = torch.randperm(train_x.shape[0], generator=torch.Generator().manual_seed(seed))
        n_val = max(1, int(val_fraction * train_x.shape[0]))
        val_idx, fit_idx = order[:n_val], order[n_val:]
        scores = []
        for lr in lrs:
            layer = _train_linear(train_x[fit_idx], train_y[fit_idx], num_classes, lr, epochs, batch_size, seed, device)
            scores.append(_accuracy(layer, train_x[val_idx], train_y[val_idx]))
        best_lr = lrs[max(range(len(lrs)), key=scores.__getitem__)]
    layer = _train_linear(train_x, train_y, num_classes, best_lr, epochs, batch_size, seed, device)
    return ProbeResult(_accuracy(layer, test_x, test_y), _accuracy(layer, train_x, train_y), best_lr)


@torch.no_grad()
def knn_accuracy(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    k: int = 200,
    temperature: float = 0.1,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
) -> float:
    """Weighted kNN on cosine similarity: each of the k nearest training points votes exp(s/T) for its class.

    device: where the similarities are computed (a GPU takes the (test, train) products in a
    fraction of a CPU's time); None = where ``train_x`` is.
    """
    _check_split(train_x, train_y, test_x, test_y)
    _checks.integer("k", k)
    _checks.integer("batch_size", batch_size)
    _checks.positive("temperature", temperature)
    k = min(k, train_x.shape[0])
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    device = train_x.device if device is None else pick_device(device)
    bank, bank_y = F.normalize(train_x.float().to(device), dim=1), train_y.to(device)
    correct = 0
    for start in range(0, test_x.shape[0], batch_size):
        q = F.normalize(test_x[start:start + batch_size].float().to(device), dim=1)
        sim, idx = (q @ bank.T).topk(k, dim=1)
        votes = torch.zeros(q.shape[0], num_classes, device=device).scatter_add_(1, bank_y[idx],
                                                                                 (sim / temperature).exp())
        correct += int((votes.argmax(1) == test_y[start:start + batch_size].to(device)).sum())
    return correct / test_x.shape[0]


@torch.no_grad()
def least_squares_accuracy(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor
) -> float:
    """Closed-form linear classifier W = pinv([X, 1]) Y_onehot (the paper's Higgs protocol); test accuracy."""
    _check_split(train_x, train_y, test_x, test_y)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    ones = torch.ones(train_x.shape[0], 1, dtype=torch.float64)
    design = torch.cat([train_x.double(), ones], dim=1)
    weights = torch.linalg.pinv(design) @ F.one_hot(train_y, num_classes).double()
    test_design = torch.cat([test_x.double(), torch.ones(test_x.shape[0], 1, dtype=torch.float64)], dim=1)
    return float(((test_design @ weights).argmax(1) == test_y).double().mean())


def evaluate_encoder(
    encoder: nn.Module,
    train: DomainData,
    test: DomainData,
    *,
    evaluate: Sequence[str] = ("linear", "knn"),
    probe_epochs: int = 100,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """Evaluate a frozen encoder on labelled ``train``/``test`` data (DomainData): features once, then classifiers.

    evaluate: any of "linear" (paper's probe; also returns "train_accuracy"), "knn",
    "least_squares" (Higgs protocol). Returns fractions in [0, 1].
    """
    if isinstance(evaluate, str):
        raise TypeError(f"evaluate must be a sequence of names, e.g. ({evaluate!r},), got the string {evaluate!r}")
    unknown = set(evaluate) - {"linear", "knn", "least_squares"}
    if unknown:
        raise ValueError(f"evaluate must name 'linear', 'knn' or 'least_squares', got {sorted(unknown)}")
    train_x = extract_features(encoder, train.inputs, train.transform)
    test_x = extract_features(encoder, test.inputs, test.transform)
    out: dict[str, float] = {}
    if "linear" in evaluate:
        probe = linear_probe(train_x, train.labels, test_x, test.labels, epochs=probe_epochs, seed=seed, device=device)
        out["linear"], out["train_accuracy"] = probe.accuracy, probe.train_accuracy
    if "knn" in evaluate:
        out["knn"] = knn_accuracy(train_x, train.labels, test_x, test.labels, k=min(200, len(train)), device=device)
    if "least_squares" in evaluate:
        out["least_squares"] = least_squares_accuracy(train_x, train.labels, test_x, test.labels)
    return out
