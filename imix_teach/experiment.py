"""Pretrain one method on a dataset, then evaluate it: the unit every comparison is built from.

    result = run("moco", train, test, alpha=1.0, epochs=30, batch_size=128)
    result.linear, result.knn           # test top-1 of a linear probe / weighted kNN

``train``/``test`` are :class:`imix_teach.data.DomainData`. The encoder defaults to a CPU-sized
one for the data's domain (:func:`small_encoder`); pass ``encoder=cifar_resnet(18)`` for the paper's.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import distributed
from .evaluate import evaluate_encoder
from .methods import METHODS, build_method
from .models import build_encoder
from .data.base import DomainData
from .train import Augment, History, pretrain


def small_encoder(input_shape: tuple[int, ...], width: int = 32) -> nn.Module:
    """A CPU-sized encoder for one model-ready sample shape: ``models.build_encoder(input_shape, "small", width)``."""
    return build_encoder(input_shape, "small", width)


def small_method_kwargs(name: str, n_train: int) -> dict[str, Any]:
    """Head and EMA settings for short CPU runs: ``METHODS[name].settings("cpu", n_train)``.

    Projection 256-64, EMA momentum 0.99 instead of 0.999 (with 0.999 an EMA network barely moves
    in a few hundred steps), a MoCo queue of at most half the training set.
    """
    if name not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {name!r}")
    return METHODS[name].settings("cpu", n_train)


@dataclass
class RunResult:
    method: str
    alpha: float | None
    seed: int
    linear: float | None = None  # test top-1 in [0, 1]
    knn: float | None = None
    least_squares: float | None = None
    train_accuracy: float | None = None  # linear probe on its own training features
    pretrain_seconds: float = 0.0
    history: History = field(default_factory=History)
    encoder: nn.Module | None = field(default=None, repr=False)

    def summary(self) -> dict[str, Any]:
        """JSON-friendly numbers (no encoder, no per-step history)."""
        return {k: getattr(self, k) for k in ("method", "alpha", "seed", "linear", "knn", "least_squares",
                                               "train_accuracy", "pretrain_seconds")}


def run(
    method: str,
    train: DomainData,
    test: DomainData,
    *,
    alpha: float | None = None,
    epochs: int = 30,
    batch_size: int = 128,
    seed: int = 0,
    tau: float = 0.2,
    encoder: nn.Module | None = None,
    augment: Augment | None = None,
    method_kwargs: dict[str, Any] | None = None,
    evaluate: tuple[str, ...] = ("linear", "knn"),
    probe_epochs: int = 100,
    device: str | torch.device | None = None,
    progress: bool = False,
    **pretrain_kwargs: Any,
) -> RunResult:
    """Pretrain ``method`` (with i-Mix when ``alpha`` is a number) on ``train``; evaluate on ``test``.

    augment: the view function ``augment(x, generator)``; None = ``train.augment`` (pass
    ``lambda x, g: train.transform(x)`` for the no-augmentation setting of Table 3).
    evaluate: any of "linear" (probe, paper protocol), "knn", "least_squares" (Higgs protocol).
    Extra keyword arguments go to :func:`imix_teach.train.pretrain` (lr, mix_options, inputmix,
    checkpoint, amp...). Same seed -> same initial weights for baseline and i-Mix.
    """
    torch.manual_seed(seed)
    encoder = encoder if encoder is not None else small_encoder(tuple(train.input_shape))
    kwargs = small_method_kwargs(method, len(train))
    kwargs.update(method_kwargs or {})
    model = build_method(method, encoder, tau=tau, **kwargs)
    labels = train.labels if model.needs_labels else None
    tic = time.perf_counter()
    history = pretrain(model, train.inputs, augment if augment is not None else train.augment, epochs=epochs, batch_size=min(batch_size, len(train)),
                       alpha=alpha, labels=labels, seed=seed, device=device, progress=progress, **pretrain_kwargs)
    result = RunResult(method, alpha, seed, pretrain_seconds=time.perf_counter() - tic, history=history,
                       encoder=model.encoder)
    if evaluate and distributed.rank() == 0:  # under torchrun, one evaluation, not one per process
        scores = evaluate_encoder(model.encoder, train, test, evaluate=evaluate, probe_epochs=probe_epochs,
                                  seed=seed, device=device)
        for name, value in scores.items():
            setattr(result, name, value)
    return result
