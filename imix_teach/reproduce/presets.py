"""The main comparison's presets: one :class:`DatasetSpec` (a run template) per dataset, in a :class:`Preset`.

``cpu`` (real offline data at CPU scale), ``paper`` (the paper's settings, one GPU) and
``paper-imagenet``. :meth:`Preset.grid` turns a preset into the runner's :class:`~.grid.Grid`:
every (dataset, method, baseline or i-Mix, seed), each a :class:`~imix_teach.run_config.RunConfig`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config import quick_mode
from ..methods import METHODS
from ..run_config import Data, Encoder, Evaluation, Method, Mixing, Optim, RunConfig, Runtime
from .grid import Grid, GridRun, config_hash

DOMAINS = ("image", "speech", "tabular")
METHOD_CHOICES = tuple(name for name, cls in METHODS.items() if not cls.needs_labels)  # the self-supervised ones
DEFAULT_METHODS = ("npair", "moco", "byol")

# Table 1 of the paper (ResNet-50, linear evaluation top-1 %, mean over runs): (baseline, i-Mix).
# The CIFAR-10 N-pair baseline cell is cut in the extracted text, so its 93.3 is not confirmed by it.
PAPER_TABLE1: dict[str, dict[str, tuple[float, float]]] = {
    "cifar10": {"npair": (93.3, 95.6), "moco": (93.5, 96.1), "byol": (94.2, 96.3)},
    "cifar100": {"npair": (70.8, 75.8), "moco": (71.6, 78.1), "byol": (72.7, 78.6)},
    "speechcommands": {"npair": (94.9, 98.3), "moco": (96.3, 98.4), "byol": (94.8, 98.3)},
}
# Our datasets shown beside another dataset's Table 1 row: FSDD (spoken digits) -> Speech Commands.
PAPER_PROXY = {"fsdd": ("speechcommands", "Speech Commands")}
# Table 1 cells missing from the paper's text as we have it: (dataset, method) -> footnote mark on the baseline.
PAPER_UNCERTAIN = {("cifar10", "npair"): "*"}
PAPER_UNCERTAIN_NOTE = ("* The CIFAR-10 N-pair baseline cell is cut in the paper's text as extracted here; "
                        "93.3 could not be checked against it.")
PAPER_SETTING = {
    "cifar10": "CIFAR-10, all 50k images at 32 px, ResNet-50, batch 256, 4000 epochs",
    "cifar100": "CIFAR-100, all 50k images at 32 px, ResNet-50, batch 256, 4000 epochs",
    "speechcommands": "Speech Commands v0.01 (12 classes, ~51k clips), ResNet-50, 500 epochs",
}


@dataclass(frozen=True)
class DatasetSpec:
    """How one dataset is pretrained and evaluated in a preset.

    template: the run (data, encoder, method's temperature and scale, i-Mix's alpha, optimisation,
    runtime, evaluation); :meth:`Preset.grid` sets the method, alpha (None for the baseline) and
    seed. method_options: per method name, its head/EMA/queue options (``Method.options``).
    paper: the Table 1 entry (a key of ``PAPER_TABLE1``) shown beside ours, if any.
    """

    domain: str
    template: RunConfig
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    paper: str | None = None
    notes: str = ""

    @property
    def dataset(self) -> str:
        """The dataset's name."""
        return self.template.data.dataset

    @property
    def primary(self) -> str:
        """The paper's protocol for this dataset: least squares for HIGGS, else the linear probe."""
        return "least_squares" if "least_squares" in self.template.evaluation.probes else "linear"

    def run(self, preset: str, method: str, imix: bool, seed: int) -> GridRun:
        """One run of the grid: this dataset, ``method``, baseline or i-Mix, ``seed``."""
        t = self.template
        config = t.replace(name=method, alpha=t.mixing.alpha if imix else None, seed=seed,
                           options=self.method_options.get(method, {}))
        h = config_hash(config)
        alpha = f"alpha{t.mixing.alpha:g}" if imix else "baseline"
        labels = dict(preset=preset, domain=self.domain, dataset=self.dataset, method=method, imix=imix,
                      alpha=config.mixing.alpha, seed=seed, primary=self.primary, config_hash=h)
        return GridRun(f"{preset}/{self.dataset}/{method}/{alpha}/seed{seed}/{h}", config, labels,
                       kind=(self.dataset, method, imix))


@dataclass(frozen=True)
class Preset:
    name: str
    datasets: tuple[DatasetSpec, ...]
    description: str

    def domain(self, domain: str) -> list[DatasetSpec]:
        """The preset's datasets of one domain (image, speech, tabular)."""
        return [d for d in self.datasets if d.domain == domain]

    def grid(self, domains: Sequence[str] = DOMAINS, methods: Sequence[str] = DEFAULT_METHODS,
             seeds: int | Sequence[int] = 3, *, datasets: Sequence[str] | None = None, **overrides: Any) -> Grid:
        """Every run, seed-major (all of seed 0 first), so a partial table already covers every cell.

        datasets: keep only these dataset names of the chosen domains. overrides: epochs,
        batch_size, per_class (they change the runs' hashes, so nothing is mixed up).
        """
        specs = _chosen(self, domains, methods, datasets)
        specs = [override(s, **overrides) for s in specs]
        seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
        if not seed_list:
            raise ValueError("seeds must be >= 1")
        runs = [s.run(self.name, m, imix, seed) for seed in seed_list for s in specs for m in methods
                for imix in (False, True)]
        from .report import write_outputs

        return Grid(self.name, tuple(runs), write_outputs, step_progress=self.name == "paper",
                    info=dict(preset=self, specs={s.dataset: s for s in specs}))


def _chosen(preset: Preset, domains: Sequence[str], methods: Sequence[str],
            datasets: Sequence[str] | None) -> list[DatasetSpec]:
    bad = [d for d in domains if d not in DOMAINS]
    if bad:
        raise ValueError(f"domain must be among {list(DOMAINS)} (or 'all'), got {bad}")
    bad = [m for m in methods if m not in METHOD_CHOICES]
    if bad:
        raise ValueError(f"methods must be among {list(METHOD_CHOICES)}, got {bad}")
    specs = [s for d in domains for s in preset.domain(d)]
    if datasets is not None:
        known = {s.dataset for s in specs}
        bad = [d for d in datasets if d not in known]
        if bad:
            raise ValueError(f"datasets must be among {sorted(known)} (preset {preset.name!r}, domains "
                             f"{list(domains)}), got {bad}")
        specs = [s for s in specs if s.dataset in datasets]
    return specs


def override(spec: DatasetSpec, *, epochs: int | None = None, batch_size: int | None = None,
             per_class: int | None = None) -> DatasetSpec:
    """The spec with command-line overrides applied (they change its hash, so nothing is mixed up)."""
    changes: dict[str, Any] = {}
    if epochs is not None:
        changes["epochs"] = epochs
    if batch_size is not None:
        changes["batch_size"] = batch_size
    if per_class is not None:
        data = spec.template.data
        changes["train_options"] = {**data.train_options, "per_class": per_class}
        changes["test_options"] = {**data.test_options, "per_class": per_class}
    return dataclasses.replace(spec, template=spec.template.replace(**changes)) if changes else spec


def _template(dataset: str, encoder: Encoder, *, epochs: int, batch_size: int, tau: float, alpha: float,
              train: dict[str, Any] | None = None, test: dict[str, Any] | None = None, **changes: Any) -> RunConfig:
    """A preset's run template: the fields every dataset sets, then any other field by name."""
    config = RunConfig(data=Data(dataset, dict(train or {}), dict(test or {})), encoder=encoder,
                       method=Method(tau=tau), mixing=Mixing(alpha=alpha),
                       optim=Optim(epochs=epochs, batch_size=batch_size))
    return config.replace(**changes) if changes else config


def _tiny_heads(queue: int) -> dict[str, dict[str, Any]]:
    """The quick version's heads: 32-16 (BYOL's predictor 32 wide) and a short MoCo queue."""
    return {m: dict(proj_hidden=32, proj_dim=16, **({"pred_hidden": 32} if m == "byol" else {}),
                    **({"queue_size": queue} if m == "moco" else {})) for m in METHOD_CHOICES}


def cpu_preset(quick: bool = False) -> Preset:
    """Real offline data, CPU-sized: the library's CPU head settings (``Method(scale="cpu")``).

    quick: a tiny smoke version with the same structure (its numbers mean nothing).
    """
    if quick:
        tiny, tiny_tab = _tiny_heads(queue=32), _tiny_heads(queue=64)
        q = dict(epochs=1, probe_epochs=5)
        return Preset("cpu-quick", (
            DatasetSpec("image", _template("cifar10", Encoder("small", 8), batch_size=32, tau=0.2, alpha=1.0,
                                           train=dict(per_class=8, image_size=16), test=dict(per_class=5, image_size=16),
                                           **q), tiny),
            DatasetSpec("speech", _template("fsdd", Encoder("small", 8), batch_size=32, tau=0.5, alpha=1.0,
                                            train=dict(per_class=4), test=dict(per_class=3), **q), tiny),
            DatasetSpec("tabular", _template("covtype", Encoder("mlp", 1 / 64), batch_size=64, tau=0.1, alpha=2.0,
                                             train=dict(per_class=20), test_limit=500, **q), tiny_tab),
            DatasetSpec("tabular", _template("higgs", Encoder("mlp", 1 / 64), batch_size=64, tau=0.1, alpha=2.0,
                                             train=dict(per_class=50), test_limit=500,
                                             probes=("least_squares", "knn"), **q), tiny_tab),
        ), "smoke test of the cpu preset (IMIX_QUICK / --quick)")
    return Preset("cpu", (
        DatasetSpec("image", _template("cifar10", Encoder("small", 16), epochs=12, batch_size=128, tau=0.2, alpha=1.0,
                                       train=dict(per_class=250, image_size=16), test=dict(image_size=16)),
                    paper="cifar10", notes="2,500 training images (250 per class, seeded), all 10,000 test images, "
                                           "both at 16x16 px; SmallConvNet width 16 (64 features)"),
        DatasetSpec("speech", _template("fsdd", Encoder("small", 16), epochs=5, batch_size=64, tau=0.5, alpha=1.0,
                                        train=dict(per_class=100)),
                    paper="speechcommands", notes="FSDD spoken digits: 1,000 training clips (100 per digit, seeded), "
                                                  "the standard 300 test clips; 32x32 log-mel; SmallConvNet width 16. "
                                                  "The paper's speech numbers are on Speech Commands."),
        DatasetSpec("tabular", _template("covtype", Encoder("mlp", 1 / 16), epochs=12, batch_size=512, tau=0.1,
                                         alpha=2.0, test_limit=10_000),
                    notes="the standard 11,340 training rows; 10,000 seeded test rows (kNN cost); "
                          "MLP 128-128-256-256-512, maxout 4 -> 128 features"),
        DatasetSpec("tabular", _template("higgs", Encoder("mlp", 1 / 16), epochs=10, batch_size=512, tau=0.1,
                                         alpha=2.0, probes=("least_squares", "knn")),
                    notes="8,787 training / 2,197 test rows of UCI HIGGS; closed-form least-squares classifier "
                          "(the paper's protocol); same MLP as CovType"),
    ), "CPU-sized reproduction on real data (about 22 min on 2 cores)")


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


def _paper(dataset: str, encoder: Encoder, **fields: Any) -> RunConfig:
    """A paper-scale template: the constructors' (paper) head defaults, the authors' lam, AMP + channels_last."""
    return RunConfig(data=Data(dataset), encoder=encoder, method=Method(scale="paper"),
                     mixing=Mixing(**PAPER_MIX), runtime=Runtime(amp="auto", channels_last="auto")).replace(**fields)


def paper_preset(depth: int = 50) -> Preset:
    """The paper's settings for one GPU (paper Appendix C.1); where the paper is silent, the authors'
    code (README "Differences from the authors' code")."""
    # warm-up: the authors' run.sh --warm, 10 epochs for runs over 500 epochs, else 5
    resnet = Encoder("resnet", depth)
    cifar = dict(epochs=4000, batch_size=256, tau=0.2, alpha=1.0, train_options=dict(crop_scale=PAPER_CROP_SCALE),
                 warmup_epochs=10)
    speech_options = dict(version=1, classes="paper12", recipe="authors")  # 10% silence added to train (default)
    covtype_options = dict(standardise="numeric", split_rule="authors")
    higgs_options = dict(train_size=100_000, train_rows="random")
    tab = dict(epochs=500, batch_size=512, tau=0.1, alpha=2.0, warmup_epochs=5)
    mlp = Encoder("mlp-authors", 1.0)
    return Preset("paper", (
        DatasetSpec("image", _paper("cifar10", resnet, **cifar), _paper_kwargs("image"), paper="cifar10"),
        DatasetSpec("image", _paper("cifar100", resnet, **cifar), _paper_kwargs("image"), paper="cifar100"),
        DatasetSpec("speech", _paper("speechcommands", resnet, epochs=500, batch_size=256, tau=0.5, alpha=1.0,
                                     train_options=speech_options, test_options=speech_options, warmup_epochs=5),
                    _paper_kwargs("speech"), paper="speechcommands",
                    notes="the paper decays lr x0.1 at epochs 300/400; this library's loop uses warm-up + cosine"),
        DatasetSpec("tabular", _paper("covtype", mlp, train_options=covtype_options, test_options=covtype_options, **tab),
                    _paper_kwargs("tabular"),
                    notes="the authors' 15,120 training rows (UCI train + val), numeric columns standardised"),
        DatasetSpec("tabular", _paper("higgs", mlp, train_options=higgs_options, test_options=higgs_options,
                                      probes=("least_squares", "knn"), **tab), _paper_kwargs("tabular"),
                    notes="Higgs100k (the authors' seeded random 100k rows); closed-form least squares"),
    ), f"the paper's settings (ResNet-{depth}), one GPU, AMP + channels_last")


def imagenet_preset(depth: int = 50) -> Preset:
    """The paper's ImageNet setting (Table 2, Fig. 2): MoCo v2 with i-CutMix, ResNet-50 (ImageNet stem),
    batch 512, lr 0.03 x 512 / 256, 800 epochs, queue 65,536, tau 0.2; the authors' run.sh for the rest
    (one lam per batch with max(lam, 1 - lam) for CutMix, 10 warm-up epochs). ImageNet-100 = their
    ``--class-ratio 0.1`` classes."""
    kwargs = _paper_kwargs("image")
    kwargs["moco"] = dict(kwargs["moco"], queue_size=65_536)
    spec = dict(epochs=800, batch_size=512, tau=0.2, alpha=1.0, lr=0.06, warmup_epochs=10, mode="cutmix",
                per_sample=False, max_lam=True)
    encoder = Encoder("resnet-imagenet", depth)
    return Preset("paper-imagenet", (
        DatasetSpec("image", _paper("imagenet100", encoder, **spec), kwargs,
                    notes="the authors' ImageNet-100 (random.seed(-1) classes)"),
        DatasetSpec("image", _paper("imagenet", encoder, **spec), kwargs,
                    notes="ILSVRC-2012, 1.28M images: needs a streaming data path (this loader holds images in memory)"),
    ), f"the paper's ImageNet setting with i-CutMix (ResNet-{depth})")


PRESETS: dict[str, Callable[..., Preset]] = {
    "cpu": cpu_preset, "paper": paper_preset, "paper-imagenet": imagenet_preset,
}


def get_preset(name: str, quick: bool | None = None) -> Preset:
    """``get_preset("cpu")``; ``quick=None`` follows ``IMIX_QUICK`` (only the cpu preset has a quick form)."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
    quick = quick_mode() if quick is None else quick
    return cpu_preset(quick=True) if (name == "cpu" and quick) else PRESETS[name]()
