"""Build and run what a :class:`~imix_teach.run_config.RunConfig` describes: the one place a run is put together.

    result = run(RunConfig(data=Data("fsdd"), method=Method("moco"), mixing=Mixing(alpha=1.0)))
    result.linear, result.knn                         # test top-1 of a linear probe / weighted kNN
    result = run("moco", train, test, alpha=1.0, epochs=50, batch_size=128)   # data already loaded

:func:`run` loads the data (unless given), builds the encoder and method (:func:`build`, which
alone seeds the initial weights), pretrains (:func:`imix_teach.train.pretrain` with the config's
``optim``, ``mixing``, ``runtime`` and ``checkpoint``) and evaluates the frozen encoder on rank 0.
``imix-teach pretrain``, every ``imix-teach reproduce`` preset, the time estimates, the notebooks'
protocol, the demo and the playground all go through it.
"""
from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import distributed
from .config import data_root, pick_device, torch_threads
from .data import NoAugment, load, weak_augment
from .data.base import DomainData
from .data.tabular import COVTYPE_GROUPS
from .evaluate import evaluate_encoder
from .methods import ContrastiveMethod, build_method
from .models import build_encoder
from .run_config import Data, Encoder, Method, RunConfig
from .train import Augment, History, pretrain

__all__ = ["DataCache", "RunResult", "augmentation", "build", "floor", "load_data", "run", "short_run", "time_steps"]


@dataclass
class RunResult:
    """What a run gives back: test top-1 of each probe (fractions), the history, the trained method."""

    config: RunConfig
    linear: float | None = None
    knn: float | None = None
    least_squares: float | None = None
    train_accuracy: float | None = None  # the linear probe on its own training features
    pretrain_seconds: float = 0.0
    eval_seconds: float = 0.0
    history: History = field(default_factory=History)
    model: ContrastiveMethod | None = field(default=None, repr=False)  # the trained method (encoder + heads)

    @property
    def encoder(self) -> nn.Module | None:
        """The trained encoder (what the probes score)."""
        return None if self.model is None else self.model.encoder

    @property
    def method(self) -> str:
        """The method's registry name ("npair", "moco", ...)."""
        return self.config.method.name

    @property
    def alpha(self) -> float | None:
        """i-Mix's alpha, None for the baseline."""
        return self.config.mixing.alpha

    @property
    def seed(self) -> int:
        """The run's seed."""
        return self.config.seed

    def summary(self) -> dict[str, Any]:
        """JSON-friendly numbers (no networks, no per-step history)."""
        keys = ("linear", "knn", "least_squares", "train_accuracy", "pretrain_seconds", "eval_seconds")
        return dict(method=self.method, alpha=self.alpha, seed=self.seed, **{k: getattr(self, k) for k in keys})


def build(config: RunConfig, input_shape: tuple[int, ...], n_train: int, *, dataset: str | None = None,
          encoder: nn.Module | None = None) -> ContrastiveMethod:
    """The encoder and method a config describes, with the run's initial weights: the one place they are seeded.

    The seed is set before the encoder and again before the heads, so the heads start the same
    whatever encoder they sit on (the grids in ``results/`` were made this way). encoder: one of
    your own (built by you, e.g. after ``torch.manual_seed``) instead of ``config.encoder``.
    n_train sizes MoCo's queue at ``scale="cpu"``.
    """
    if encoder is None:
        kind = config.encoder.kind
        groups = COVTYPE_GROUPS if kind == "mlp-authors" and (dataset or config.data.dataset) == "covtype" else None
        torch.manual_seed(config.seed)
        encoder = build_encoder(input_shape, kind, config.encoder.size, groups=groups)
    m: Method = config.method
    torch.manual_seed(config.seed)  # the heads from the same seed (see above)
    return build_method(m.name, encoder, scale=m.scale, n_train=n_train, tau=m.tau, **m.options)


def views_of(data: Data, train: DomainData) -> tuple[torch.Tensor, Augment]:
    """The rows pretraining draws batches from, and the view function: ``train.inputs`` and
    :func:`augmentation`, except without augmentation, where every row's one view (the evaluation
    transform) is computed once here instead of twice per step (the same values: the transform is
    deterministic and works row by row; a log-mel spectrogram costs more than the step that uses it)."""
    if data.augmentation != "none":
        return train.inputs, augmentation(data, train)
    with torch.no_grad():
        views = torch.cat([train.transform(train.inputs[i:i + 512]) for i in range(0, len(train), 512)])
    return views, _identity


def _identity(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    return x


def augmentation(data: Data, train: DomainData) -> Augment:
    """The view function ``augment(x, generator)`` of ``data.augmentation`` for ``train``."""
    if data.augmentation == "none":
        return NoAugment(train.transform)
    if data.augmentation == "weak":
        if len(train.input_shape) != 3:
            raise ValueError(f"augmentation 'weak' (crop + flip) needs images, got {train.name} rows of shape "
                             f"{tuple(train.input_shape)}: use 'domain' or 'none'")
        return weak_augment(tuple(train.input_shape), train.transformer)
    return train.augment


class DataCache:
    """Loads each (root, dataset, split, options) once and keeps the last ``maxsize``; applies the row limits."""

    maxsize = 6

    def __init__(self) -> None:
        self._cache: dict[str, DomainData] = {}

    def get(self, data: Data, split: str) -> DomainData:
        """One split of ``data``, cut to ``data.train_limit`` / ``data.test_limit`` seeded random rows."""
        options = dict(data.train_options if split == "train" else data.test_options)
        limit = data.train_limit if split == "train" else data.test_limit
        key = json.dumps([str(data_root(data.root)), data.dataset, split, options, limit], sort_keys=True, default=str)
        if key in self._cache:
            self._cache[key] = self._cache.pop(key)  # most recently used last
            return self._cache[key]
        while len(self._cache) >= self.maxsize:
            self._cache.pop(next(iter(self._cache)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # e.g. small classes keeping all rows
            part = load(data.dataset, split, root=data.root, **options)
        if limit is not None and len(part) > limit:
            idx = torch.randperm(len(part), generator=torch.Generator().manual_seed(0))[:limit]
            part = part.subset(idx.sort().values)
        self._cache[key] = part
        return part


def load_data(data: Data, cache: DataCache | None = None) -> tuple[DomainData, DomainData]:
    """The (train, test) splits ``data`` describes (through ``cache`` when given)."""
    cache = cache or DataCache()
    return cache.get(data, "train"), cache.get(data, "test")


def run(config: RunConfig | str = RunConfig(), train: DomainData | None = None, test: DomainData | None = None, *,
        encoder: nn.Module | Encoder | None = None, augment: Augment | None = None, cache: DataCache | None = None,
        **changes: Any) -> RunResult:
    """Pretrain what ``config`` describes, then evaluate its frozen encoder on ``test`` (rank 0 only).

    config: a :class:`RunConfig`, or a method's name for ``RunConfig(method=Method(name))``;
    ``changes`` then change fields by name (``alpha=1.0, epochs=50``: :meth:`RunConfig.replace`).
    train/test: data already loaded (notebooks); None loads ``config.data``. encoder: an
    :class:`~imix_teach.run_config.Encoder` (``Encoder("small", 16)``) changes the config's, a network
    of your own replaces it (a playground's toy encoder); augment: your own view function.
    The same config gives the same run from every entry point: weights from :func:`build`, every
    draw of the loop from ``config.seed``.
    """
    config, encoder = _configured(config, encoder, changes)
    if train is None:
        train, test = load_data(config.data, cache)
    if test is None and config.evaluation.probes:
        raise ValueError("test must be given with train when the run is evaluated; pass probes=() to skip evaluation")
    if config.optim.batch_size > len(train):  # a batch larger than the data is the whole data
        config = config.replace(batch_size=len(train))
    with torch_threads(config.runtime.threads), distributed.session(pick_device(config.runtime.device)) as ctx:
        method = build(config, tuple(train.input_shape), len(train), dataset=train.name, encoder=encoder)
        inputs, views = (train.inputs, augment) if augment is not None else views_of(config.data, train)
        tic = time.perf_counter()
        history = pretrain(method, inputs, views, optim=config.optim,
                           mixing=config.mixing, runtime=config.runtime, checkpoint=config.checkpoint,
                           labels=train.labels if method.needs_labels else None, seed=config.seed)
        result = RunResult(config, pretrain_seconds=time.perf_counter() - tic, history=history, model=method)
        if config.evaluation.probes and ctx.is_main:  # under torchrun, one evaluation, not one per process
            tic = time.perf_counter()
            _score(result, train, test, ctx.device)
            result.eval_seconds = time.perf_counter() - tic
    return result


def floor(config: RunConfig | str, train: DomainData, test: DomainData, *, encoder: nn.Module | Encoder | None = None,
          **changes: Any) -> RunResult:
    """The never-trained encoder's scores: what pretraining must beat (the same initial weights as :func:`run`
    with the same config and seed). Arguments as :func:`run`'s."""
    config, encoder = _configured(config, encoder, changes)
    device = pick_device(config.runtime.device)
    with torch_threads(config.runtime.threads):
        # on the run's device: the features are computed where the encoder is (a CPU would encode
        # CIFAR-10 through a ResNet for minutes while the GPU waits)
        method = build(config, tuple(train.input_shape), len(train), dataset=train.name, encoder=encoder).to(device)
        result = RunResult(config, model=method)
        tic = time.perf_counter()
        _score(result, train, test, device)
        result.eval_seconds = time.perf_counter() - tic
    return result


def _configured(config: RunConfig | str, encoder: nn.Module | Encoder | None,
                changes: dict[str, Any]) -> tuple[RunConfig, nn.Module | None]:
    """The config with a method name, an Encoder and changes by name applied; the network override, if any."""
    config = RunConfig(method=Method(config)) if isinstance(config, str) else config
    if isinstance(encoder, Encoder):
        config, encoder = config.replace(encoder=encoder), None
    return (config.replace(**changes) if changes else config), encoder


def _score(result: RunResult, train: DomainData, test: DomainData, device: torch.device) -> None:
    ev = result.config.evaluation
    scores = evaluate_encoder(result.encoder, train, test, evaluate=ev.probes, probe_epochs=ev.probe_epochs,
                              seed=result.config.seed, device=device)
    for name, value in scores.items():
        setattr(result, name, value)


def short_run(config: RunConfig, train: DomainData, steps: int = 3,
              callback: Callable[[int, History], None] | None = None) -> History:
    """Two epochs of ``steps`` steps on the first rows of ``train``: the history a timing reads.

    No checkpoint, no evaluation. The first epoch carries the one-off costs (imports, allocations,
    kernel builds, ``torch.compile``), the second is the steady state. callback(epoch, history):
    :func:`imix_teach.train.pretrain`'s, after each epoch's last loss is read (a GPU has finished
    the epoch then), so a clock read there times whole epochs (``benchmarks/gpu_session.py``).
    """
    batch = min(config.optim.batch_size, len(train))
    part = train.subset(torch.arange(min(len(train), batch * steps)))
    short = config.replace(epochs=2, batch_size=batch, progress=False, path=None)
    with torch_threads(short.runtime.threads):
        method = build(short, tuple(train.input_shape), len(train), dataset=train.name)
        x, views = views_of(short.data, part)
        return pretrain(method, x, views, optim=short.optim, mixing=short.mixing, runtime=short.runtime,
                        labels=part.labels if method.needs_labels else None, seed=short.seed, callback=callback)


def time_steps(config: RunConfig, train: DomainData, steps: int = 3) -> float:
    """Seconds per training step of ``config`` on ``train`` here: ``steps`` steps timed after a warm-up epoch.

    An estimate's unit (no checkpoint, no evaluation): the second of two short epochs
    (:func:`short_run`), so one-off costs (imports, allocations, kernel builds) are not counted.
    """
    batch = min(config.optim.batch_size, len(train))
    return short_run(config, train, steps).epoch_seconds[1] / max(1, min(len(train), batch * steps) // batch)
