"""A run, described once: what to train on, what to train, how, where, and how to score it.

    config = RunConfig(data=Data("cifar10", train_options=dict(per_class=100, image_size=16)),
                       method=Method("moco"), mixing=Mixing(alpha=1.0), optim=Optim(epochs=50, batch_size=128))
    config = config.replace(alpha=None, seed=1)       # fields by name: each name lives in one group
    result = imix_teach.engine.run(config)            # load, build, pretrain, evaluate

Every entry point builds its runs from a :class:`RunConfig`: ``imix-teach pretrain``, each
``imix-teach reproduce`` preset (the regime and domains grids too), the time estimates and the
notebooks' shared protocol. :func:`imix_teach.engine.run` turns one into a trained, evaluated
encoder, and :func:`imix_teach.train.pretrain` takes its training groups (``mixing``, ``optim``,
``runtime``, ``checkpoint``) as they are. The defaults here are the only copy of each default.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import _checks

AUGMENTATIONS = ("domain", "none", "weak")
INPUTMIX = (False, True, "per_view", "both_views")
AMP = ("auto", "bf16", "fp16", "off")
_SEED_STRIDE, _RANK_STRIDE = 1_000_003, 2**40  # the training loop's generators: seed * stride + epoch + rank * ...
# seed * _SEED_STRIDE + epoch + rank * _RANK_STRIDE must be a seed torch takes; 2**62 leaves room for
# any epoch count and up to 2**22 processes.
MAX_SEED = (_checks.SEED_MAX - 2**62) // _SEED_STRIDE


def check_seed(seed: Any) -> int:
    """A run's seed: an integer in [0, MAX_SEED] (TypeError or ValueError naming ``seed`` otherwise)."""
    return _checks.integer("seed", seed, 0, MAX_SEED)


@dataclass(frozen=True)
class Data:
    """Which data: a name of :data:`imix_teach.data.DATASETS`, each split's loader options, the views.

    augmentation: "domain" (the dataset's own views: SimCLR's recipe for images, the speech recipe,
    masking noise for tables), "none" (both views are the evaluation transform: identical views,
    Table 3's setting), or "weak" (images: random resized crop + flip, no colour).
    train_limit / test_limit: train on / evaluate on a fixed seeded random subset of this many rows
    (the same rows for every seed; a smaller limit keeps a subset of a larger one's rows).
    """

    dataset: str = "digits"
    train_options: Mapping[str, Any] = field(default_factory=dict)
    test_options: Mapping[str, Any] = field(default_factory=dict)
    test_limit: int | None = None
    train_limit: int | None = None
    augmentation: str = "domain"
    root: str | os.PathLike | None = None  # where the files are: None = $IMIX_DATA, else the user's cache

    def __post_init__(self) -> None:
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {self.augmentation!r}")
        for name in ("train_limit", "test_limit"):
            if getattr(self, name) is not None:
                _checks.integer(name, getattr(self, name))


@dataclass(frozen=True)
class Encoder:
    """The backbone, by :func:`imix_teach.models.build_encoder`'s vocabulary: a kind and its size.

    kind: "small" (CPU-sized: SmallConvNet of width ``size`` for images, a scaled TabularMLP for
    tables), "resnet" (CIFAR-stem ResNet, depth ``size``), "resnet-imagenet", "mlp" (the paper's
    5-layer MLP, widths times ``size``), "mlp-authors". None: the kind's default size.
    """

    kind: str = "small"
    size: float | None = None


@dataclass(frozen=True)
class Method:
    """The method by name (:data:`imix_teach.methods.METHODS`), its temperature and head settings.

    scale: "cpu" = :meth:`~imix_teach.methods.ContrastiveMethod.settings` for short CPU runs (heads
    256-64, EMA 0.99, a queue sized to the data), "paper" = the constructors' (paper) defaults.
    options: keyword arguments that win over those (proj_hidden, queue_size, shuffle_bn, ...).
    """

    name: str = "npair"
    tau: float = 0.2
    scale: str = "cpu"
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Mixing:
    """i-Mix and InputMix. alpha None: the plain method; a number: i-Mix with lam ~ Beta(alpha, alpha).

    mode "mixup" or "cutmix" (i-CutMix); per_sample: one lam per sample, max_lam: max(lam, 1 - lam)
    (both the authors' code; the paper draws one lam per batch). inputmix (Table 3): True or
    "per_view" (partners from the same view), "both_views" (from both, the authors' code).
    """

    alpha: float | None = None
    mode: str = "mixup"
    per_sample: bool = False
    max_lam: bool = False
    inputmix: bool | str = False

    def __post_init__(self) -> None:
        if self.alpha is not None and not (isinstance(self.alpha, (int, float)) and not isinstance(self.alpha, bool)
                                           and 0 < self.alpha < math.inf):
            raise ValueError(f"alpha must be a finite number > 0 (or None for no i-Mix), got {self.alpha!r}")
        if self.mode not in ("mixup", "cutmix"):
            raise ValueError(f"mode must be 'mixup' or 'cutmix', got {self.mode!r}")
        _checks.flag("per_sample", self.per_sample)
        _checks.flag("max_lam", self.max_lam)
        if self.inputmix not in INPUTMIX or isinstance(self.inputmix, int) and not isinstance(self.inputmix, bool):
            raise ValueError(f"inputmix must be False, True, 'per_view' or 'both_views', got {self.inputmix!r}")

    @property
    def imix_options(self) -> dict[str, Any]:
        """The keyword arguments a method passes on to :func:`imix_teach.mixing.imix`."""
        return dict(mode=self.mode, per_sample=self.per_sample, max_lam=self.max_lam)


@dataclass(frozen=True)
class Optim:
    """SGD with momentum, linear warm-up then cosine (the paper's optimiser), and how long.

    batch_size: the global batch, split over torchrun's processes. lr None: 0.125 * batch_size / 256.
    warmup_epochs None: min(10, epochs // 10).
    """

    epochs: int = 30
    batch_size: int = 256
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_epochs: int | None = None
    nesterov: bool = False

    def __post_init__(self) -> None:
        _checks.integer("epochs", self.epochs)
        _checks.integer("batch_size", self.batch_size, 2)
        if self.lr is not None and not (isinstance(self.lr, (int, float)) and not isinstance(self.lr, bool)
                                        and 0 < self.lr < math.inf):
            raise ValueError(f"lr must be a finite number > 0 (or None for 0.125 * batch_size / 256), got {self.lr!r}")
        _checks.number_in("momentum", self.momentum, 0, 1, high_open=True)
        _checks.number_in("weight_decay", self.weight_decay, 0, math.inf, high_open=True)
        if self.warmup_epochs is not None:
            _checks.integer("warmup_epochs", self.warmup_epochs, 0)
        _checks.flag("nesterov", self.nesterov)

    @property
    def base_lr(self) -> float:
        """The learning rate after warm-up: ``lr``, or the paper's 0.125 * batch_size / 256."""
        return 0.125 * self.batch_size / 256 if self.lr is None else float(self.lr)

    def warmup(self) -> int:
        """Warm-up epochs: ``warmup_epochs``, or min(10, epochs // 10)."""
        return min(10, self.epochs // 10) if self.warmup_epochs is None else self.warmup_epochs


@dataclass(frozen=True)
class Runtime:
    """Where and how fast: none of it changes what a run computes beyond float rounding.

    device None: CUDA, then MPS, then CPU. amp "auto": bf16 (else fp16) on CUDA, none elsewhere.
    channels_last "auto": image batches in the channels_last layout on CUDA and CPU (the floats are
    summed in another order than NCHW). sync_bn: SyncBatchNorm when several processes train.
    threads: torch CPU threads (None: torch's choice).
    """

    device: str | None = None
    amp: str = "auto"
    channels_last: bool | str = "auto"
    compile: bool = False
    sync_bn: bool = True
    threads: int | None = None
    progress: bool = True
    log_every: int = 10

    def __post_init__(self) -> None:
        if self.amp not in AMP and self.amp not in (True, False, None):
            raise ValueError(f"amp must be one of {AMP}, got {self.amp!r}")
        if self.channels_last not in (True, False, "auto"):
            raise ValueError(f"channels_last must be True, False or 'auto', got {self.channels_last!r}")
        for name in ("compile", "sync_bn", "progress"):
            _checks.flag(name, getattr(self, name))
        if self.threads is not None:
            _checks.integer("threads", self.threads)
        _checks.integer("log_every", self.log_every)


@dataclass(frozen=True)
class Checkpointing:
    """A file written atomically after every epoch (rank 0); with ``resume`` a run continues from it."""

    path: str | os.PathLike | None = None
    resume: bool = True


@dataclass(frozen=True)
class Evaluation:
    """How the frozen encoder is scored: any of "linear" (the paper's probe), "knn", "least_squares" (HIGGS)."""

    probes: tuple[str, ...] = ("linear", "knn")
    probe_epochs: int = 100

    def __post_init__(self) -> None:
        if isinstance(self.probes, str):
            raise TypeError(f"probes must be a sequence of names, e.g. ({self.probes!r},), got the string {self.probes!r}")
        unknown = set(self.probes) - {"linear", "knn", "least_squares"}
        if unknown:
            raise ValueError(f"probes must name 'linear', 'knn' or 'least_squares', got {sorted(unknown)}")
        object.__setattr__(self, "probes", tuple(self.probes))
        _checks.integer("probe_epochs", self.probe_epochs)


@dataclass(frozen=True)
class RunConfig:
    """One run: data, encoder, method, mixing, optimisation, runtime, checkpointing, evaluation, seed.

    seed: the one seed of the run. It sets the initial weights (:func:`imix_teach.engine.build`)
    and every draw of the training loop: data order, views, mixing (:func:`imix_teach.train.pretrain`).
    """

    data: Data = Data()
    encoder: Encoder = Encoder()
    method: Method = Method()
    mixing: Mixing = Mixing()
    optim: Optim = Optim()
    runtime: Runtime = Runtime()
    checkpoint: Checkpointing = Checkpointing()
    evaluation: Evaluation = Evaluation()
    seed: int = 0

    def __post_init__(self) -> None:
        check_seed(self.seed)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with fields changed by name: ``config.replace(alpha=1.0, epochs=50, name="moco")``.

        A field's name is unique over the groups, so it says which group it changes; a group's
        name (``encoder=Encoder("resnet", 18)``) or ``seed`` replaces that field whole.
        """
        groups: dict[str, dict[str, Any]] = {}
        top: dict[str, Any] = {}
        for key, value in changes.items():
            if key in _TOP:
                top[key] = value
            elif key in _OWNER:
                groups.setdefault(_OWNER[key], {})[key] = value
            else:
                raise ValueError(f"{key!r} is not a setting of a run; the settings are {sorted(_OWNER)} and the "
                                 f"groups {sorted(_TOP)} (imix_teach.run_config)")
        for group, values in groups.items():
            top[group] = dataclasses.replace(top.get(group, getattr(self, group)), **values)
        return dataclasses.replace(self, **top)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: every group as a dict (tuples as lists, paths as strings)."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))


_TOP = {f.name for f in dataclasses.fields(RunConfig)}
# Which group owns each field name (the names are unique over the groups: checked here, at import).
_OWNER = {f.name: group.name for group in dataclasses.fields(RunConfig) if group.name != "seed"
          for f in dataclasses.fields(group.default)}
assert len(_OWNER) == sum(len(dataclasses.fields(g.default)) for g in dataclasses.fields(RunConfig)
                          if g.name != "seed") and not _OWNER.keys() & _TOP, "field names must be unique"
