"""Reproduce the paper's main comparison: each method with and without i-Mix, per domain, over seeds.

    imix-teach reproduce --preset cpu --domain all --methods npair,moco,byol --seeds 3 --out results/cpu

Two presets (``PRESETS``):

- ``cpu``: real offline data at CPU scale (CIFAR-10 subset at 16 px, FSDD spoken digits,
  CovType and HIGGS), small encoders, a few hundred steps per run; the whole grid
  (4 datasets x 3 methods x {baseline, i-Mix} x 3 seeds) is sized for about 30 minutes on 2 CPU cores.
- ``paper``: the paper's settings (SPEC section 3: ResNet-50 with the CIFAR stem, projection
  2048-2048-128, batch 256, tau 0.2, alpha 1, 4000 epochs on CIFAR; Speech Commands 500 epochs
  tau 0.5; tabular 5-layer MLP, batch 512, 500 epochs, tau 0.1, alpha 2) for one GPU with AMP and
  channels_last. ``--estimate-steps K`` times K steps per run and prints the expected total
  (``benchmarks/README.md``: about 90-175 H100-hours for the full grid, an estimate).

The protocol is the paper's: pretrain, freeze, then a linear probe (100 epochs, SGD) on the
features; for HIGGS the closed-form least-squares classifier; a weighted kNN as a second number.

Every finished run is written to ``<out>/runs.json`` at once (temporary file + ``os.replace``),
keyed by preset/dataset/method/alpha/seed and a hash of everything that shapes the run, so a
killed reproduction continues where it stopped and recomputes nothing; a run interrupted
mid-way resumes from its last epoch checkpoint. The table (``results.md``, ``results.json``)
and figure (``results.png``) are rewritten from ``runs.json`` at the end.

Several processes may share one ``--out`` folder (say one per method, or two on the same grid
to use two GPUs): ``runs.json`` is locked and merged on every write, and each run is claimed by
a lock, so no record is lost and no run is computed twice.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import platform
import statistics
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout

from .config import pick_device, quick_mode
from .train import NonFiniteLossError

DOMAINS = ("image", "speech", "tabular")
METHOD_CHOICES = ("npair", "simclr", "moco", "byol")
DEFAULT_METHODS = ("npair", "moco", "byol")

# Table 1 of the paper (ResNet-50, linear evaluation top-1 %, mean over runs): (baseline, i-Mix).
# The CIFAR-10 N-pair baseline cell is cut in the extracted text; 93.3 is the value SPEC section 3 gives.
PAPER_TABLE1: dict[str, dict[str, tuple[float, float]]] = {
    "cifar10": {"npair": (93.3, 95.6), "moco": (93.5, 96.1), "byol": (94.2, 96.3)},
    "cifar100": {"npair": (70.8, 75.8), "moco": (71.6, 78.1), "byol": (72.7, 78.6)},
    "speechcommands": {"npair": (94.9, 98.3), "moco": (96.3, 98.4), "byol": (94.8, 98.3)},
}
PAPER_SETTING = {
    "cifar10": "CIFAR-10, all 50k images at 32 px, ResNet-50, batch 256, 4000 epochs",
    "cifar100": "CIFAR-100, all 50k images at 32 px, ResNet-50, batch 256, 4000 epochs",
    "speechcommands": "Speech Commands v0.01 (12 classes, ~51k clips), ResNet-50, 500 epochs",
}


# ----------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class DatasetSpec:
    """How one dataset is pretrained and evaluated in a preset.

    encoder: ("small", width) = :func:`experiment.small_encoder`; ("resnet", depth) = the paper's
    CIFAR-stem ResNet (channels from the data); ("mlp", width_scale) = :class:`models.TabularMLP`.
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


def _paper_kwargs(hidden: int = 2048, dim: int = 128) -> dict[str, dict[str, Any]]:
    return {
        "npair": dict(proj_hidden=hidden, proj_dim=dim),
        "simclr": dict(proj_hidden=hidden, proj_dim=dim),
        "moco": dict(proj_hidden=hidden, proj_dim=dim, momentum=0.999, queue_size=4096),
        # BYOL's predictor has the projection head's sizes (Appendix C.1): dim -> 2048 -> dim.
        "byol": dict(proj_hidden=hidden, proj_dim=dim, momentum=0.999, pred_hidden=hidden),
    }


def paper_preset(depth: int = 50) -> Preset:
    """The paper's settings for one GPU (SPEC section 3, paper Appendix C.1)."""
    resnet = dict(encoder=("resnet", depth), batch_size=256, weight_decay=1e-4, warmup_epochs=10,
                  method_kwargs=_paper_kwargs())
    tab = dict(encoder=("mlp", 1.0), epochs=500, batch_size=512, tau=0.1, weight_decay=1e-4, warmup_epochs=10,
               method_kwargs=_paper_kwargs())
    datasets = (
        DatasetSpec("image", "cifar10", epochs=4000, tau=0.2, alpha=1.0, paper="cifar10", **resnet),
        DatasetSpec("image", "cifar100", epochs=4000, tau=0.2, alpha=1.0, paper="cifar100", **resnet),
        DatasetSpec("speech", "speechcommands", epochs=500, tau=0.5, alpha=1.0, paper="speechcommands",
                    train_options=dict(version=1, classes="paper12"),  # 10% silence added to train (loader default)
                    notes="the paper decays lr x0.1 at epochs 300/400; this library's loop uses warm-up + cosine",
                    **resnet),
        DatasetSpec("tabular", "covtype", alpha=2.0, notes="standard 11,340 training rows", **tab),
        DatasetSpec("tabular", "higgs", alpha=2.0, train_options=dict(train_size=100_000),
                    evaluate=("least_squares", "knn"), notes="Higgs100k; closed-form least squares", **tab),
    )
    return Preset("paper", datasets, f"the paper's settings (ResNet-{depth}), one GPU, AMP + channels_last",
                  amp="auto", channels_last="auto")


PRESETS: dict[str, Callable[..., Preset]] = {"cpu": cpu_preset, "paper": paper_preset}


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


# ----------------------------------------------------------------------------- the grid
@dataclass(frozen=True)
class RunSpec:
    preset: str
    spec: DatasetSpec
    method: str
    imix: bool
    seed: int
    mix_options: tuple[tuple[str, Any], ...] = ()
    amp: str = "auto"
    channels_last: bool | str = "auto"
    compile: bool = False

    @property
    def alpha(self) -> float | None:
        return self.spec.alpha if self.imix else None

    def config(self) -> dict[str, Any]:
        """Everything that shapes the run's numbers (the seed and i-Mix switch are in the key itself)."""
        spec = self.spec.as_dict()
        spec["method_kwargs"] = spec["method_kwargs"].get(self.method, {})
        spec.pop("notes")
        spec.pop("paper")
        return dict(spec=spec, mix_options=dict(self.mix_options), amp=self.amp,
                    channels_last=self.channels_last, compile=self.compile)

    def config_hash(self) -> str:
        return hashlib.sha1(json.dumps(self.config(), sort_keys=True, default=str).encode()).hexdigest()[:10]

    @property
    def key(self) -> str:
        alpha = f"alpha{self.spec.alpha:g}" if self.imix else "baseline"
        return f"{self.preset}/{self.spec.dataset}/{self.method}/{alpha}/seed{self.seed}/{self.config_hash()}"


def plan(preset: Preset, domains: Sequence[str] = DOMAINS, methods: Sequence[str] = DEFAULT_METHODS,
         seeds: int | Sequence[int] = 3, *, datasets: Sequence[str] | None = None, **overrides: Any) -> list[RunSpec]:
    """Every run of the grid, seed-major (all of seed 0 first), so a partial table already covers all cells.

    datasets: keep only these dataset names of the chosen domains (e.g. ``["cifar10"]``).
    """
    bad = [d for d in domains if d not in DOMAINS]
    if bad:
        raise ValueError(f"domain must be among {list(DOMAINS)} (or 'all'), got {bad}")
    bad = [m for m in methods if m not in METHOD_CHOICES]
    if bad:
        raise ValueError(f"methods must be among {list(METHOD_CHOICES)}, got {bad}")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ValueError("seeds must be >= 1")
    specs = [override(s, **overrides) for d in domains for s in preset.domain(d)]
    if datasets is not None:
        known = {s.dataset for s in specs}
        bad = [d for d in datasets if d not in known]
        if bad:
            raise ValueError(f"datasets must be among {sorted(known)} (preset {preset.name!r}, domains {list(domains)}), "
                             f"got {bad}")
        specs = [s for s in specs if s.dataset in datasets]
    mix = tuple(sorted(preset.mix_options.items()))
    return [RunSpec(preset.name, s, m, imix, seed, mix, preset.amp, preset.channels_last, preset.compile)
            for seed in seed_list for s in specs for m in methods for imix in (False, True)]


# ----------------------------------------------------------------------------- results store
class ResultStore:
    """``runs.json``: one record per finished run, safe to share between processes.

    Every write takes a file lock, re-reads the file and merges, so two ``reproduce`` processes
    on one folder keep each other's records; the file is replaced atomically (a unique temporary
    name + ``os.replace``), so a reader or a kill mid-write sees the old file or the new one.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.lock = FileLock(f"{self.path}.lock")
        self.records: dict[str, dict[str, Any]] = self._read()

    def _read(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        try:
            return {r["key"]: r for r in json.loads(self.path.read_text())["runs"]}
        except (ValueError, KeyError, TypeError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise ValueError(
                f"{self.path} cannot be read as a run store ({type(err).__name__}: {err}). Restore it, or move "
                "it aside to start over (the runs it listed are then recomputed)."
            ) from err

    def refresh(self) -> None:
        """Pick up the runs other processes have saved since."""
        self.records = {**self.records, **self._read()}

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def add(self, record: dict[str, Any]) -> None:
        with self.lock:
            self.refresh()  # merge on write: never drop what another process saved meanwhile
            self.records[record["key"]] = record
            atomic_write(self.path, json.dumps({"runs": list(self.records.values())}, indent=1))

    def select(self, keys: Iterable[str]) -> list[dict[str, Any]]:
        return [self.records[k] for k in keys if k in self.records]


def atomic_write(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``path`` via a uniquely named temporary file + fsync + ``os.replace``.

    A unique name lets two processes write the same file at once; on any error (a full disk, a
    kill) the old file stays as it was and the temporary one is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as fh:  # mode from the umask, like any new file
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise type(err)(err.errno, f"could not write {path} ({err.strerror or err}); free disk space or "
                                     "fix the folder's permissions and run again: finished runs are kept") from err
        raise


# ----------------------------------------------------------------------------- one run
def build_encoder(spec: DatasetSpec, input_shape: tuple[int, ...]) -> torch.nn.Module:
    from .experiment import small_encoder
    from .models import TabularMLP, cifar_resnet

    kind, size = spec.encoder
    if kind == "small":
        return small_encoder(tuple(input_shape), width=int(size))
    if kind == "resnet":
        return cifar_resnet(int(size), in_channels=input_shape[0])
    if kind == "mlp":
        return TabularMLP(input_shape[0], width=float(size))
    raise ValueError(f"encoder kind must be 'small', 'resnet' or 'mlp', got {kind!r}")


class DataCache:
    """Loads each (root, dataset, options) once per process (the last ``maxsize`` kept); applies ``test_limit``."""

    _shared: dict[str, Any] = {}
    maxsize = 4

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = root
        self._cache = DataCache._shared

    def get(self, spec: DatasetSpec):
        from .config import data_root
        from .data import load

        key = json.dumps([str(data_root(self.root)), spec.dataset, spec.train_options, spec.test_options,
                          spec.test_limit], sort_keys=True, default=str)
        if key in self._cache:
            self._cache[key] = self._cache.pop(key)  # most recently used last
        else:
            while len(self._cache) >= self.maxsize:
                self._cache.pop(next(iter(self._cache)))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # e.g. small classes keeping all rows
                train = load(spec.dataset, "train", root=self.root, **spec.train_options)
                test = load(spec.dataset, "test", root=self.root, **spec.test_options)
            if spec.test_limit is not None and len(test) > spec.test_limit:
                idx = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[: spec.test_limit]
                test = test.subset(idx.sort().values)
            self._cache[key] = (train, test)
        return self._cache[key]


def execute(run: RunSpec, data: DataCache, *, checkpoint: Path | None = None, device=None,
            step_progress: bool = False) -> dict[str, Any]:
    """Pretrain + evaluate one run; returns its JSON record."""
    from . import experiment

    spec = run.spec
    train, test = data.get(spec)
    torch.manual_seed(run.seed)  # same seed -> same initial weights with and without i-Mix
    encoder = build_encoder(spec, train.input_shape)
    resumed = checkpoint is not None and checkpoint.exists()
    tic = time.perf_counter()
    common = dict(
        key=run.key, preset=run.preset, domain=spec.domain, dataset=spec.dataset, method=run.method, imix=run.imix,
        alpha=run.alpha, seed=run.seed, config_hash=run.config_hash(), primary=spec.primary, n_train=len(train),
        n_test=len(test), epochs=spec.epochs, batch_size=min(spec.batch_size, len(train)),
        resumed_from_checkpoint=resumed, torch=torch.__version__, threads=torch.get_num_threads(),
        device=str(pick_device(device)),
    )
    try:
        result = experiment.run(
            run.method, train, test, alpha=run.alpha, epochs=spec.epochs, batch_size=spec.batch_size, seed=run.seed,
            tau=spec.tau, encoder=encoder, method_kwargs=spec.method_kwargs.get(run.method, {}), evaluate=spec.evaluate,
            probe_epochs=spec.probe_epochs, device=device, progress=step_progress, lr=spec.lr, weight_decay=spec.weight_decay,
            warmup_epochs=spec.warmup_epochs, mix_options=dict(run.mix_options) or None, amp=run.amp,
            channels_last=run.channels_last, compile=run.compile, checkpoint=checkpoint,
        )
    except NonFiniteLossError as err:  # recorded (and not retried): the table counts it, the grid goes on
        return dict(common, linear=None, knn=None, least_squares=None, train_accuracy=None, final_loss=None,
                    epoch_loss=[], pretrain_seconds=time.perf_counter() - tic, eval_seconds=0.0, error=str(err),
                    finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    total = time.perf_counter() - tic
    return dict(
        common, linear=result.linear, knn=result.knn, least_squares=result.least_squares,
        train_accuracy=result.train_accuracy, final_loss=(result.history.epoch_loss or [None])[-1],
        epoch_loss=result.history.epoch_loss, pretrain_seconds=result.pretrain_seconds,
        eval_seconds=total - result.pretrain_seconds,
        lam_sampling="one lam per sample, max(lam, 1-lam) (authors' code)"
        if dict(run.mix_options).get("per_sample") else "one lam ~ Beta(alpha, alpha) per batch (paper)",
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def _safe(key: str) -> str:
    return key.replace("/", "__")


def reproduce(
    preset: Preset | str = "cpu",
    domains: Sequence[str] = DOMAINS,
    methods: Sequence[str] = DEFAULT_METHODS,
    seeds: int | Sequence[int] = 3,
    out: str | os.PathLike = "results/cpu",
    *,
    root: str | os.PathLike | None = None,
    device: str | None = None,
    max_runs: int | None = None,
    on_run_done: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = True,
    write: bool = True,
    step_progress: bool | None = None,
    datasets: Sequence[str] | None = None,
    **overrides: Any,
) -> list[dict[str, Any]]:
    """Run the grid (skipping runs already in ``<out>/runs.json``), then write table and figure.

    max_runs: stop after this many *new* runs (the rest on a later call). on_run_done(record):
    called after each run has been saved. step_progress: a per-step bar inside each run too
    (default: only for the paper preset, whose runs take hours). Returns the grid's records so far.
    """
    from tqdm.auto import tqdm

    preset = get_preset(preset) if isinstance(preset, str) else preset
    runs = plan(preset, domains, methods, seeds, datasets=datasets, **overrides)
    step_progress = preset.name == "paper" if step_progress is None else step_progress
    out = Path(out)
    store = ResultStore(out / "runs.json")
    todo = [r for r in runs if r.key not in store]
    if todo or write:
        _check_writable(out, store)  # fail now, not after the first hour of compute
    data = DataCache(root)
    bar = tqdm(total=len(runs), initial=len(runs) - len(todo), disable=not progress, desc=f"reproduce {preset.name}",
               unit="run")
    done = 0
    claims = _claimed(todo, out / "checkpoints")
    try:
        for run in claims:
            store.refresh()
            if run.key in store:  # another process finished it while we waited
                bar.update(1)
                continue
            if max_runs is not None and done >= max_runs:
                break
            bar.set_postfix_str(f"{run.spec.dataset} {run.method}{' + i-Mix' if run.imix else ''} seed {run.seed}")
            ckpt = out / "checkpoints" / f"{_safe(run.key)}.pt"
            record = execute(run, data, checkpoint=ckpt, device=device, step_progress=progress and step_progress)
            store.add(record)
            ckpt.unlink(missing_ok=True)
            done += 1
            bar.update(1)
            if on_run_done is not None:
                on_run_done(record)
    finally:
        claims.close()  # releases the lock of a run left unfinished
        bar.close()
        records = _write_up(store, runs, out, preset, write, failing=sys.exc_info()[1])
    return records


def _write_up(store: ResultStore, runs: Sequence[RunSpec], out: Path, preset: Preset, write: bool,
              failing: BaseException | None) -> list[dict[str, Any]]:
    """The grid's records from every process; with ``write``, the table and figure from them.

    failing: the error that stopped the grid, if any; a failed write then only warns, so that
    error (say a full disk during a checkpoint) is the one the user sees.
    """
    with store.lock:  # one writer of the table at a time
        store.refresh()
        records = store.select(r.key for r in runs)
        if write and records:
            try:
                write_outputs(out, records, preset, runs)
            except OSError as err:
                if failing is None:
                    raise
                warnings.warn(f"the table was not updated either: {err}", stacklevel=3)
    return records


def _claimed(runs: Sequence[RunSpec], folder: Path) -> Iterator[RunSpec]:
    """Yield each run while holding its lock, so two processes on one grid never run the same one.

    A run another process holds is put off to the end and then waited for (its record is then in
    the store). The kernel drops a killed process's locks, so nothing stays stuck after kill -9.
    """
    folder.mkdir(parents=True, exist_ok=True)
    later: list[RunSpec] = []
    for wait, queue in ((False, runs), (True, later)):
        for run in queue:
            lock = FileLock(folder / f"{_safe(run.key)}.lock", timeout=-1 if wait else 0)
            try:
                lock.acquire()
            except Timeout:
                later.append(run)
                continue
            try:
                yield run
            finally:
                lock.release()


def _check_writable(out: Path, store: ResultStore) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with store.lock:
            atomic_write(out / ".write-test", "")
            (out / ".write-test").unlink()
    except OSError as err:
        raise PermissionError(
            f"out={str(out)!r} is not a writable folder ({type(err).__name__}: {err}); choose another --out "
            "or fix its permissions"
        ) from err


# ----------------------------------------------------------------------------- tables and figure
def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0.0 for a single value)."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("values must not be empty")
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def format_mean_std(values: Sequence[float] | None, scale: float = 100.0, digits: int = 1) -> str:
    """``[0.701, 0.723, 0.712] -> '71.2 ± 1.1'`` (percent, sample std); one value -> '70.1'; none -> '–'."""
    vals = [v for v in (values or []) if v is not None and math.isfinite(v)]
    if not vals:
        return "–"
    m, s = mean_std([scale * v for v in vals])
    return f"{m:.{digits}f}" if len(vals) == 1 else f"{m:.{digits}f} ± {s:.{digits}f}"


def summarize(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (dataset, method): baseline and i-Mix values per metric, in first-seen order."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        row = rows.setdefault((r["dataset"], r["method"]), dict(
            domain=r["domain"], dataset=r["dataset"], method=r["method"], primary=r["primary"],
            alpha=None, baseline={}, imix={}, seconds={"baseline": [], "imix": []}))
        side = "imix" if r["imix"] else "baseline"
        if r["imix"]:
            row["alpha"] = r["alpha"]
        for metric in ("linear", "knn", "least_squares"):
            if r.get(metric) is not None:
                row[side].setdefault(metric, []).append(r[metric])
        row[side].setdefault("seeds", []).append(r["seed"])
        row["seconds"][side].append(r["pretrain_seconds"] + r["eval_seconds"])
        if r.get("error"):
            row.setdefault("diverged", {"baseline": 0, "imix": 0})[side] += 1
    out = []
    for row in rows.values():
        p = row["primary"]
        b, i = row["baseline"].get(p), row["imix"].get(p)
        row["delta"] = (100 * (mean_std(i)[0] - mean_std(b)[0])) if b and i else None
        row["paper"] = PAPER_TABLE1.get(_paper_key(row["dataset"]), {}).get(row["method"])
        out.append(row)
    return out


def _paper_key(dataset: str) -> str | None:
    return {"cifar10": "cifar10", "cifar100": "cifar100", "speechcommands": "speechcommands",
            "fsdd": "speechcommands"}.get(dataset)


METRIC_NAMES = {"linear": "linear probe", "least_squares": "least squares", "knn": "kNN"}


def markdown_table(rows: Sequence[dict[str, Any]], paper_matches: bool = False) -> str:
    """The results table: ours (mean ± std over seeds, top-1 %) and, separately, the paper's Table 1."""
    paper_head = "paper Table 1, same setting" if paper_matches else "paper Table 1 (ResNet-50, full data, 500-4000 epochs: NOT our setting)"
    lines = [
        f"| dataset | method | metric | baseline | i-Mix | Δ (i-Mix − baseline) | kNN baseline | kNN i-Mix | seeds | {paper_head} |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        p = row["primary"]
        delta = "–" if row["delta"] is None else f"{row['delta']:+.1f}"
        paper = row["paper"]
        ref = "–" if paper is None else f"{paper[0]:.1f} → {paper[1]:.1f}"
        if paper is not None and row["dataset"] == "fsdd":
            ref += " (Speech Commands)"
        if paper is not None and row["dataset"] == "cifar10" and row["method"] == "npair":
            ref = ref.replace("93.3", "93.3*")
        n = str(max(len(row["baseline"].get("seeds", [])), len(row["imix"].get("seeds", []))))
        if row.get("diverged"):
            n += f" ({row['diverged']['baseline']} baseline / {row['diverged']['imix']} i-Mix diverged)"
        lines.append(
            f"| {row['dataset']} | {row['method']} | {METRIC_NAMES[p]} | {format_mean_std(row['baseline'].get(p))} "
            f"| {format_mean_std(row['imix'].get(p))} | {delta} | {format_mean_std(row['baseline'].get('knn'))} "
            f"| {format_mean_std(row['imix'].get('knn'))} | {n} | {ref} |"
        )
    return "\n".join(lines)


def _notes(preset: Preset, runs: Sequence[RunSpec]) -> str:
    used = {r.spec.dataset: r.spec for r in runs}
    probe = "/".join(sorted({str(s.probe_epochs) for s in used.values()}))
    lines = ["Top-1 test accuracy in %, mean ± sample standard deviation over seeds (seeds change the "
             "initial weights, augmentations, batches and mixing; the data subsets are fixed). "
             "Δ = difference of the means. Metric: the paper's protocol (linear probe: frozen encoder, "
             f"standardised features, SGD {probe} epochs, lr picked from {{0.01, 0.1, 1}} on a 20 % held-out part; "
             "HIGGS: closed-form least squares). kNN: weighted cosine kNN, k = 200, T = 0.1.", ""]
    for name, spec in used.items():
        alpha = f"alpha {spec.alpha:g}"
        lines.append(f"- **{name}** ({spec.domain}): {spec.epochs} epochs, batch {spec.batch_size}, tau {spec.tau:g}, "
                     f"i-Mix {alpha}, lr {spec.lr if spec.lr is not None else 0.125 * spec.batch_size / 256:g}, "
                     f"wd {spec.weight_decay:g}, encoder {spec.encoder[0]} {spec.encoder[1]:g}. {spec.notes}")
    lam = "one lam per sample, max(lam, 1 - lam) (authors' code)" if preset.mix_options.get("per_sample") \
        else "one lam ~ Beta(alpha, alpha) per batch (the paper's choice)"
    lines += ["", f"Mixing: {lam}; only the anchor view is mixed; partners from randperm(N)."]
    if any(r.spec.paper or r.spec.dataset == "fsdd" for r in runs):
        lines += ["", "Paper column: Table 1 of Lee et al. (ICLR 2021), baseline → i-Mix, linear evaluation. "
                  + "; ".join(f"{k}: {v}" for k, v in PAPER_SETTING.items() if k in {_paper_key(d) for d in used})
                  + ". * The CIFAR-10 N-pair baseline cell is cut in the extracted paper text; 93.3 is SPEC §3's value. "
                  "The tabular Table 1 numbers are not in the extracted text, so they are not shown."]
    return "\n".join(lines)


def plot_results(rows: Sequence[dict[str, Any]], path: str | os.PathLike, title: str = "") -> None:
    """One panel per dataset: per method, baseline (open) and i-Mix (filled) mean ± std, seeds as dots.

    Markers, not bars: the y-axis is zoomed to the data, which would make bar lengths misleading.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(1, len(datasets), figsize=(3.2 * len(datasets) + 0.6, 3.4), squeeze=False)
    colours = plt.get_cmap("tab10").colors
    for ax, ds in zip(axes[0], datasets):
        drows = [r for r in rows if r["dataset"] == ds]
        for k, row in enumerate(drows):
            p = row["primary"]
            for j, side in enumerate(("baseline", "imix")):
                vals = [100 * v for v in row[side].get(p, [])]
                if not vals:
                    continue
                m, s = mean_std(vals)
                x = k + (j - 0.5) * 0.36
                ax.errorbar(x, m, yerr=s if len(vals) > 1 else None, fmt="o", ms=7, capsize=4, color=colours[k % 10],
                            mfc=colours[k % 10] if side == "imix" else "white", mew=1.5, zorder=2)
                ax.scatter([x + 0.09] * len(vals), vals, s=7, color="grey", zorder=3)
        ax.set_xticks(range(len(drows)), [r["method"] for r in drows])
        ax.set_xlim(-0.6, len(drows) - 0.4)
        ax.set_title(ds, fontsize=10)
        ax.set_ylabel(f"test top-1 % ({METRIC_NAMES[drows[0]['primary']]})")
        ax.grid(axis="y", alpha=0.3)
    handles = [Line2D([], [], marker="o", ls="", color="black", mfc="white", label="baseline"),
               Line2D([], [], marker="o", ls="", color="black", label="i-Mix"),
               Line2D([], [], marker=".", ls="", color="grey", label="seeds")]
    axes[0][-1].legend(handles=handles, fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    atomic_write(path, png.getvalue())
    plt.close(fig)


def write_outputs(out: str | os.PathLike, records: Sequence[dict[str, Any]], preset: Preset,
                  runs: Sequence[RunSpec]) -> dict[str, Path]:
    """``results.json`` (summary + config), ``results.md`` (table + notes), ``results.png``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = summarize(records)
    expected = len(runs)
    complete = len(records) == expected
    status = "complete" if complete else f"PARTIAL: {len(records)} of {expected} runs"
    table = markdown_table(rows, paper_matches=preset.name == "paper")
    md = [f"# i-Mix reproduction, preset `{preset.name}` ({status})", "", preset.description, "", table, "",
          _notes(preset, runs), "",
          f"Compute: {sum(r['pretrain_seconds'] + r['eval_seconds'] for r in records) / 60:.1f} min summed over "
          f"{len(records)} runs (pretraining {sum(r['pretrain_seconds'] for r in records) / 60:.1f} min); "
          f"torch {torch.__version__}, {records[0]['threads']} thread(s), device {records[0]['device']}."]
    paths = {"md": out / "results.md", "json": out / "results.json", "png": out / "results.png"}
    summary = dict(
        preset=preset.name, status=status, runs_expected=expected, runs_found=len(records), rows=rows,
        datasets={r.spec.dataset: r.spec.as_dict() for r in runs}, mix_options=preset.mix_options,
        machine=dict(platform=platform.platform(), python=platform.python_version(), torch=torch.__version__,
                     cpus=os.cpu_count()),
        compute_seconds=sum(r["pretrain_seconds"] + r["eval_seconds"] for r in records),
        written=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    for path, text in ((paths["md"], "\n".join(md) + "\n"), (paths["json"], json.dumps(summary, indent=1))):
        atomic_write(path, text)
    plot_results(rows, paths["png"], title=f"i-Mix vs baseline, preset {preset.name} ({status}); "
                                            "mean ± std over seeds (y-axes zoomed)")
    return paths


# ----------------------------------------------------------------------------- time estimate
def estimate(preset: Preset | str, domains: Sequence[str] = DOMAINS, methods: Sequence[str] = DEFAULT_METHODS,
             seeds: int = 3, *, steps: int = 5, root=None, device=None, datasets: Sequence[str] | None = None,
             **overrides: Any) -> list[dict[str, Any]]:
    """Time ``steps`` training steps of each (dataset, method, i-Mix on/off) and extrapolate to the grid.

    An estimate: pretraining steps only (evaluation not counted), measured after one warm-up
    epoch on the current device, times the number of steps the preset's epochs need.
    """
    from .methods import build_method
    from .train import pretrain

    preset = get_preset(preset) if isinstance(preset, str) else preset
    rows = []
    data = DataCache(root)
    seen = set()
    for run in plan(preset, domains, methods, [0], datasets=datasets, **overrides):
        spec = run.spec
        if (spec.dataset, run.method, run.imix) in seen:
            continue
        seen.add((spec.dataset, run.method, run.imix))
        train, _ = data.get(spec)
        bs = min(spec.batch_size, len(train))
        idx = torch.arange(min(len(train), bs * steps))
        torch.manual_seed(0)
        model = build_method(run.method, build_encoder(spec, train.input_shape), tau=spec.tau,
                             **spec.method_kwargs.get(run.method, {}))
        hist = pretrain(model, train.inputs[idx], train.augment, epochs=2, batch_size=bs, alpha=run.alpha,
                        device=device, amp=run.amp, channels_last=run.channels_last, compile=run.compile,
                        progress=False, mix_options=dict(run.mix_options) or None)
        step_s = hist.epoch_seconds[1] / max(1, len(idx) // bs)
        total_steps = spec.epochs * (len(train) // bs)
        rows.append(dict(dataset=spec.dataset, method=run.method, imix=run.imix, step_seconds=step_s,
                         steps_per_run=total_steps, hours_per_run=step_s * total_steps / 3600,
                         hours_all_seeds=seeds * step_s * total_steps / 3600, device=str(pick_device(device))))
    return rows


def estimate_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| dataset | method | i-Mix | s/step | steps/run | h/run | h for all seeds |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['method']} | {'yes' if r['imix'] else 'no'} | {r['step_seconds']:.3f} "
                     f"| {r['steps_per_run']:,} | {r['hours_per_run']:.1f} | {r['hours_all_seeds']:.1f} |")
    total = sum(r["hours_all_seeds"] for r in rows)
    lines.append(f"\nEstimated pretraining total: {total:.0f} h on {rows[0]['device'] if rows else '?'} "
                 "(an extrapolation from a few measured steps; evaluation not included).")
    return "\n".join(lines)


__all__ = [
    "DOMAINS", "METHOD_CHOICES", "PAPER_TABLE1", "PRESETS", "DatasetSpec", "Preset", "RunSpec", "ResultStore",
    "cpu_preset", "paper_preset", "get_preset", "plan", "reproduce", "execute", "summarize", "format_mean_std",
    "mean_std", "markdown_table", "plot_results", "write_outputs", "estimate", "estimate_table",
]
