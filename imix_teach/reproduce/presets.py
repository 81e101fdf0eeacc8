"""The settings of a reproduction: one :class:`DatasetSpec` per dataset, grouped in a :class:`Preset`."""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import quick_mode
from ..methods import METHODS

DOMAINS = ("image", "speech", "tabular")
METHOD_CHOICES = tuple(name for name, cls in METHODS.items() if not cls.needs_labels)  # the registry's self-supervised methods
DEFAULT_METHODS = ("npair", "moco", "byol")

# Table 1 of the paper (ResNet-50, linear evaluation top-1 %, mean over runs): (baseline, i-Mix).
# The CIFAR-10 N-pair baseline cell is cut in the extracted text; 93.3 is the value SPEC section 3 gives.
PAPER_TABLE1: dict[str, dict[str, tuple[float, float]]] = {
    "cifar10": {"npair": (93.3, 95.6), "moco": (93.5, 96.1), "byol": (94.2, 96.3)},
    "cifar100": {"npair": (70.8, 75.8), "moco": (71.6, 78.1), "byol": (72.7, 78.6)},
    "speechcommands": {"npair": (94.9, 98.3), "moco": (96.3, 98.4), "byol": (94.8, 98.3)},
}
# Our datasets shown beside another dataset's Table 1 row: FSDD (spoken digits) -> Speech Commands.
PAPER_PROXY = {"fsdd": ("speechcommands", "Speech Commands")}
# Table 1 cells missing from the extracted paper text: (dataset, method) -> footnote mark on the baseline.
PAPER_UNCERTAIN = {("cifar10", "npair"): "*"}
PAPER_UNCERTAIN_NOTE = "* The CIFAR-10 N-pair baseline cell is cut in the extracted paper text; 93.3 is SPEC §3's value."
PAPER_SETTING = {
    "cifar10": "CIFAR-10, all 50k images at 32 px, ResNet-50, batch 256, 4000 epochs",
    "cifar100": "CIFAR-100, all 50k images at 32 px, ResNet-50, batch 256, 4000 epochs",
    "speechcommands": "Speech Commands v0.01 (12 classes, ~51k clips), ResNet-50, 500 epochs",
}


@dataclass(frozen=True)
class DatasetSpec:
    """How one dataset is pretrained and evaluated in a preset.

    encoder: ("small", width) = :func:`experiment.small_encoder`; ("resnet", depth) = the paper's
    CIFAR-stem ResNet (channels from the data); ("mlp", width_scale) = :class:`models.TabularMLP`;
    ("mlp-authors", width_scale) = the same in the authors' layout (64-wide input layer, no last BN);
    ("resnet-imagenet", depth) = ResNet with the ImageNet stem.
    method_kwargs: per method name, passed to :func:`methods.build_method` (heads, EMA, queue).
    test_limit: evaluate on a fixed seeded random subset of this many test rows (kNN cost).
    paper: the Table 1 entry (a key of ``PAPER_TABLE1``) shown beside ours, if any.
    """

    domain: str
    dataset: str
    encoder: tuple[str, float]
    epochs: int
    batch_size: int
    tau: float
    alpha: float
    train_options: dict[str, Any] = field(default_factory=dict)
    test_options: dict[str, Any] = field(default_factory=dict)
    test_limit: int | None = None
    lr: float | None = None  # None: the paper's 0.125 * batch / 256
    weight_decay: float = 1e-4
    warmup_epochs: int | None = None  # None: min(10, epochs // 10)
    method_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    evaluate: tuple[str, ...] = ("linear", "knn")
    probe_epochs: int = 100
    paper: str | None = None
    notes: str = ""

    @property
    def primary(self) -> str:
        """The paper's protocol for this dataset: least squares for HIGGS, else the linear probe."""
        return "least_squares" if "least_squares" in self.evaluate else "linear"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready settings (tuples as lists), as hashed and written to results.json."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))


@dataclass(frozen=True)
class Preset:
    name: str
    datasets: tuple[DatasetSpec, ...]
    description: str
    mix_options: dict[str, Any] = field(default_factory=dict)  # imix(): per_sample/max_lam/mode
    amp: str = "auto"
    channels_last: bool | str = "auto"
    compile: bool = False

    def domain(self, domain: str) -> list[DatasetSpec]:
        """The preset's datasets of one domain (image, speech, tabular)."""
        return [d for d in self.datasets if d.domain == domain]


def _small_kwargs(ema_methods_momentum: float = 0.99, queue: int = 4096, hidden: int = 256, dim: int = 64):
    # Same as experiment.small_method_kwargs, written out so the preset (and its hash) shows them.
    return {
        "npair": dict(proj_hidden=hidden, proj_dim=dim),
        "simclr": dict(proj_hidden=hidden, proj_dim=dim),
        "moco": dict(proj_hidden=hidden, proj_dim=dim, momentum=ema_methods_momentum, queue_size=queue),
        "byol": dict(proj_hidden=hidden, proj_dim=dim, momentum=ema_methods_momentum, pred_hidden=hidden),
    }


def cpu_preset(quick: bool = False) -> Preset:
    """Real offline data, CPU-sized (see module docstring). ``quick``: a tiny smoke version."""
    if quick:
        q = dict(epochs=1, probe_epochs=5)
        datasets = (
            DatasetSpec("image", "cifar10", ("small", 8), batch_size=32, tau=0.2, alpha=1.0,
                        train_options=dict(per_class=8, image_size=16), test_options=dict(per_class=5, image_size=16),
                        method_kwargs=_small_kwargs(queue=32, hidden=32, dim=16), **q),
            DatasetSpec("speech", "fsdd", ("small", 8), batch_size=32, tau=0.5, alpha=1.0,
                        train_options=dict(per_class=4), test_options=dict(per_class=3),
                        method_kwargs=_small_kwargs(queue=32, hidden=32, dim=16), **q),
            DatasetSpec("tabular", "covtype", ("mlp", 1 / 64), batch_size=64, tau=0.1, alpha=2.0,
                        train_options=dict(per_class=20), test_limit=500,
                        method_kwargs=_small_kwargs(queue=64, hidden=32, dim=16), **q),
            DatasetSpec("tabular", "higgs", ("mlp", 1 / 64), batch_size=64, tau=0.1, alpha=2.0,
                        train_options=dict(per_class=50), test_limit=500, evaluate=("least_squares", "knn"),
                        method_kwargs=_small_kwargs(queue=64, hidden=32, dim=16), **q),
        )
        return Preset("cpu-quick", datasets, "smoke test of the cpu preset (IMIX_QUICK / --quick)")
    datasets = (
        DatasetSpec(
            "image", "cifar10", ("small", 16), epochs=12, batch_size=128, tau=0.2, alpha=1.0,
            train_options=dict(per_class=250, image_size=16), test_options=dict(image_size=16),
            method_kwargs=_small_kwargs(queue=1250), paper="cifar10",
            notes="2,500 training images (250 per class, seeded), all 10,000 test images, both at 16x16 px; "
                  "SmallConvNet width 16 (64 features)",
        ),
        DatasetSpec(
            "speech", "fsdd", ("small", 16), epochs=5, batch_size=64, tau=0.5, alpha=1.0,
            train_options=dict(per_class=100), method_kwargs=_small_kwargs(queue=500), paper="speechcommands",
            notes="FSDD spoken digits: 1,000 training clips (100 per digit, seeded), the standard 300 test clips; "
                  "32x32 log-mel; SmallConvNet width 16. The paper's speech numbers are on Speech Commands.",
        ),
        DatasetSpec(
            "tabular", "covtype", ("mlp", 1 / 16), epochs=12, batch_size=512, tau=0.1, alpha=2.0,
            test_limit=10_000, method_kwargs=_small_kwargs(queue=4096),
            notes="the standard 11,340 training rows; 10,000 seeded test rows (kNN cost); "
                  "MLP 128-128-256-256-512, maxout 4 -> 128 features",
        ),
        DatasetSpec(
            "tabular", "higgs", ("mlp", 1 / 16), epochs=10, batch_size=512, tau=0.1, alpha=2.0,
            evaluate=("least_squares", "knn"), method_kwargs=_small_kwargs(queue=4096),
            notes="the offline HIGGS part: 8,787 training / 2,197 test rows; closed-form least-squares "
                  "classifier (paper's protocol); same MLP as CovType",
        ),
    )
    return Preset("cpu", datasets, "CPU-sized reproduction on real offline data (about 30 min on 2 cores)")


# The authors' projection heads (their run.sh, ``--proj``): "mlpbn", with a BN on the output too,
# for N-pair on CIFAR and for every speech and tabular run; "mlpbn1" (no output BN) for MoCo and
# BYOL on CIFAR. SimCLR is not in their code and keeps the plain head.
PAPER_PROJ_BN = {"image": ("npair",), "speech": ("npair", "moco", "byol"), "tabular": ("npair", "moco", "byol")}
# What produced Table 1: the authors' code (builder.mixup, share_lam=False) draws one lam per
# sample and keeps max(lam, 1 - lam); the paper's text says one lam per batch.
PAPER_MIX = {"per_sample": True, "max_lam": True}
PAPER_CROP_SCALE = (0.2, 1.0)  # RandomResizedCrop area on CIFAR, the authors' main_pretext.py


def _paper_kwargs(domain: str, hidden: int = 2048, dim: int = 128) -> dict[str, dict[str, Any]]:
    """Per method: heads 2048-2048-128, output BN as the authors, N-pair's views in one forward pass."""
    head = {m: dict(proj_hidden=hidden, proj_dim=dim, proj_bn=m in PAPER_PROJ_BN[domain])
            for m in ("npair", "moco", "byol")}
    return {
        # single_pass: [mixed anchors; clean positives] through one forward pass (shared BN statistics)
        "npair": dict(head["npair"], single_pass=True),
        "simclr": dict(proj_hidden=hidden, proj_dim=dim),
        "moco": dict(head["moco"], momentum=0.999, queue_size=4096),
        # BYOL's predictor has the projection head's sizes (Appendix C.1): dim -> 2048 -> dim; the
        # authors put a BN on its output for tables too (run.sh --pred mlpbn).
        "byol": dict(head["byol"], momentum=0.999, pred_hidden=hidden, pred_bn=domain == "tabular"),
    }


def paper_preset(depth: int = 50) -> Preset:
    """The paper's settings for one GPU (SPEC section 3, paper Appendix C.1); where the paper is
    silent, the authors' code (README "Differences from the authors' code")."""
    # warm-up: the authors' run.sh --warm, 10 epochs for runs over 500 epochs, else 5
    resnet = dict(encoder=("resnet", depth), batch_size=256, weight_decay=1e-4)
    tab = dict(encoder=("mlp-authors", 1.0), epochs=500, batch_size=512, tau=0.1, weight_decay=1e-4,
               warmup_epochs=5, method_kwargs=_paper_kwargs("tabular"))
    cifar = dict(epochs=4000, tau=0.2, alpha=1.0, train_options=dict(crop_scale=PAPER_CROP_SCALE),
                 warmup_epochs=10, method_kwargs=_paper_kwargs("image"), **resnet)
    speech_options = dict(version=1, classes="paper12", recipe="authors")  # 10% silence added to train (default)
    covtype_options = dict(standardise="numeric", split_rule="authors")
    higgs_options = dict(train_size=100_000, train_rows="random")
    datasets = (
        DatasetSpec("image", "cifar10", paper="cifar10", **cifar),
        DatasetSpec("image", "cifar100", paper="cifar100", **cifar),
        DatasetSpec("speech", "speechcommands", epochs=500, tau=0.5, alpha=1.0, paper="speechcommands",
                    train_options=speech_options, test_options=speech_options, warmup_epochs=5,
                    method_kwargs=_paper_kwargs("speech"),
                    notes="the paper decays lr x0.1 at epochs 300/400; this library's loop uses warm-up + cosine",
                    **resnet),
        DatasetSpec("tabular", "covtype", alpha=2.0, train_options=covtype_options, test_options=covtype_options,
                    notes="the authors' 15,120 training rows (UCI train + val), numeric columns standardised", **tab),
        DatasetSpec("tabular", "higgs", alpha=2.0, train_options=higgs_options, test_options=higgs_options,
                    evaluate=("least_squares", "knn"),
                    notes="Higgs100k (the authors' seeded random 100k rows); closed-form least squares", **tab),
    )
    return Preset("paper", datasets, f"the paper's settings (ResNet-{depth}), one GPU, AMP + channels_last",
                  mix_options=dict(PAPER_MIX), amp="auto", channels_last="auto")


def imagenet_preset(depth: int = 50) -> Preset:
    """The paper's ImageNet setting (Table 2, Fig. 2): MoCo v2 with i-CutMix, ResNet-50 (ImageNet stem),
    batch 512, lr 0.03 x 512 / 256, 800 epochs, queue 65,536, tau 0.2; the authors' run.sh for the rest
    (one lam per batch with max(lam, 1 - lam) for CutMix, 10 warm-up epochs). ImageNet-100 = their
    ``--class-ratio 0.1`` classes."""
    kwargs = _paper_kwargs("image")
    kwargs["moco"] = dict(kwargs["moco"], queue_size=65_536)
    spec = dict(encoder=("resnet-imagenet", depth), epochs=800, batch_size=512, tau=0.2, alpha=1.0, lr=0.06,
                weight_decay=1e-4, warmup_epochs=10, method_kwargs=kwargs)
    datasets = (
        DatasetSpec("image", "imagenet100", notes="the authors' ImageNet-100 (random.seed(-1) classes)", **spec),
        DatasetSpec("image", "imagenet", notes="ILSVRC-2012, 1.28M images: needs a streaming data path "
                                               "(this loader holds images in memory)", **spec),
    )
    return Preset("paper-imagenet", datasets, f"the paper's ImageNet setting with i-CutMix (ResNet-{depth})",
                  mix_options={"mode": "cutmix", "max_lam": True}, amp="auto", channels_last="auto")


PRESETS: dict[str, Callable[..., Preset]] = {
    "cpu": cpu_preset, "paper": paper_preset, "paper-imagenet": imagenet_preset,
}


def get_preset(name: str, quick: bool | None = None) -> Preset:
    """``get_preset("cpu")``; ``quick=None`` follows ``IMIX_QUICK`` (only the cpu preset has a quick form)."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
    quick = quick_mode() if quick is None else quick
    return cpu_preset(quick=True) if (name == "cpu" and quick) else PRESETS[name]()


def override(spec: DatasetSpec, *, epochs: int | None = None, batch_size: int | None = None,
             per_class: int | None = None) -> DatasetSpec:
    """The spec with command-line overrides applied (they change its hash, so nothing is mixed up)."""
    changes: dict[str, Any] = {}
    if epochs is not None:
        changes["epochs"] = epochs
    if batch_size is not None:
        changes["batch_size"] = batch_size
    if per_class is not None:
        changes["train_options"] = {**spec.train_options, "per_class": per_class}
        changes["test_options"] = {**spec.test_options, "per_class": per_class}
    return dataclasses.replace(spec, **changes) if changes else spec
