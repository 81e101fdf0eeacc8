"""The parts of ``gpu_session.py`` that are not the speed table: sizes, data, the JSON files, the comparison.

The comparison (N-pair and MoCo, with and without i-Mix, all of CIFAR-10 and a 10 % cell) goes
through :func:`imix_teach.engine.run` with a :class:`~imix_teach.run_config.RunConfig`, so a run is
put together in the one place every other entry point uses. The engine already keeps the data and
the augmentation on the device: :func:`imix_teach.train.pretrain` moves the uint8 images to the
device once, and the dataset's batched :class:`~imix_teach.data.augment.ImageAugment` draws both
views there with a device generator, so nothing here bypasses it.
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from imix_teach import engine
from imix_teach.data import ImageAugment, ImageTransform, load
from imix_teach.data.base import DomainData, per_class_indices
from imix_teach.data.image import CIFAR_STATS
from imix_teach.files import write_json
from imix_teach.run_config import Data, Encoder, Evaluation, Method, Mixing, Optim, RunConfig, Runtime

EPOCH_IMAGES = 50_000  # one CIFAR-10 epoch, what "seconds per epoch" divides
CELLS = ("full", "10pct")  # all of the training split, and 10 % of each class (the paper's small-data regime)
METHODS = ("npair", "moco")
ALPHAS = (None, 1.0)  # None: the plain method; 1.0: i-Mix with lam ~ Beta(1, 1)
SEEDS = (0,)
SETTING = dict(amp="bf16", channels_last=True, compile=False)  # the comparison's precision and layout
# No torch.compile in the comparison: every run builds a fresh model (a compile each), and the probes'
# eval-mode forward passes and the last, shorter batch of feature extraction would recompile it again.
METHOD_OPTIONS = {"moco": {"momentum": 0.99}}  # 0.999 barely moves the key encoder in a few hundred steps
MARGIN = 0.9  # the share of the remaining minutes the rule plans to use (the rest absorbs misestimates)
EPOCHS_RULE = (
    "After the speed table and the never-trained floors: remaining = deadline - now; training = "
    f"{MARGIN} * remaining - (each run's evaluation, the floor's measured eval seconds of its cell) - "
    "(each run's one-off cost, the speed table's first-epoch overhead); every run gets the same share of "
    "training seconds, so a cell's epochs = floor(share / (its steps per epoch * the slower step time of "
    "its methods, with or without i-Mix, from the speed table)), at least 1 and at most max_epochs; all "
    "four runs of a cell train the same epochs (the 10 % cell gets ~10x the epochs: the same steps)."
)


@dataclass(frozen=True)
class Sizes:
    """How big each part is: the GPU session's sizes, or the dry run's (the same steps, tiny, on a CPU)."""

    encoder: Encoder
    batch: int
    speed_steps: int  # timed steps per speed row (after as many untimed ones)
    image_size: int
    small_per_class: int  # the 10 % cell's images per class
    train_per_class: int | None  # None: the whole training split
    test_per_class: int | None
    probe_epochs: int
    max_epochs: int
    compile_backend: str | None  # None: torch's default (inductor)
    threads: int | None  # torch CPU threads, None: torch's choice


# The GPU session: ResNet-18 (CIFAR stem), batch 512, 32 px, CIFAR-10 whole; the paper's probe (100 epochs).
GPU = Sizes(Encoder("resnet", 18), 512, 20, 32, 500, None, None, 100, 4000, None, None)
# The dry run: a width-8 SmallConvNet on 8 px images (a ResNet-18 step takes ~1 s on a shared 2-core CPU
# even at 8 px), 40 + 20 images, batch 16, 2 steps, 2 epochs; torch.compile traces forward and backward
# (AOTAutograd) without generating code ("aot_eager"), so the compile rows run in seconds. One thread:
# on a loaded 2-core machine two threads made these tiny steps 10-100x slower (OpenMP waiting on a busy core).
DRY = Sizes(Encoder("small", 8), 16, 2, 8, 1, 4, 2, 2, 2, "aot_eager", 1)


def now() -> float:
    """Seconds since the epoch (what the records' timestamps hold, so their order can be checked)."""
    return time.time()


def stamp(t: float) -> str:
    """ISO 8601 UTC of ``t``, for people reading the files."""
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


class Report:
    """One JSON file in --out, rewritten whole and atomically after every record: a killed session keeps what finished."""

    def __init__(self, path: Path, header: dict[str, Any]):
        self.path, self.doc = path, dict(header)
        self.write()

    def write(self) -> None:
        """Replace the file with the document as it is now (imix_teach.files: temporary file, fsync, rename)."""
        write_json(self.path, self.doc)

    def add(self, key: str, record: dict[str, Any]) -> None:
        """Append ``record`` to the list ``key`` and write the file."""
        self.doc.setdefault(key, []).append(record)
        self.write()


# ----------------------------------------------------------------------------- data
def cifar_root(path: str | Path) -> Path:
    """The data root the loader wants: PATH itself, or its parent when PATH is the CIFAR folder itself."""
    path = Path(path).expanduser()
    return path.parent if path.name in ("cifar10-jpg", "cifar-10-batches-py") else path


def synthetic(split: str, per_class: int, size: int) -> DomainData:
    """Random uint8 images whose brightness follows the class (probes can beat chance), CIFAR-10's shape.

    Only for ``--dry-run`` without ``--data``: the pipeline runs, nothing is learnt about CIFAR-10.
    """
    g = torch.Generator().manual_seed(0 if split == "train" else 1)
    labels = torch.arange(10).repeat_interleave(per_class)
    noise = torch.randint(0, 96, (len(labels), 3, size, size), generator=g)
    images = (noise + 16 * labels.view(-1, 1, 1, 1)).to(torch.uint8)
    mean, std = CIFAR_STATS["cifar10"]
    return DomainData("synthetic", "image", split, images, labels, [str(c) for c in range(10)], (3, size, size),
                      ImageAugment((size, size), mean, std), ImageTransform(mean, std), {"source": "synthetic"})


def load_splits(data: str | None, sizes: Sizes) -> tuple[DomainData, DomainData]:
    """CIFAR-10 (train, test) through the library's loader, at the sizes' image size and subset; synthetic without a path."""
    if data is None:
        return synthetic("train", sizes.train_per_class or 8, sizes.image_size), \
            synthetic("test", sizes.test_per_class or 4, sizes.image_size)
    root = cifar_root(data)
    splits = []
    for split, per_class in (("train", sizes.train_per_class), ("test", sizes.test_per_class)):
        splits.append(load("cifar10", split, root=root, download=False, image_size=sizes.image_size,
                           per_class=per_class))
    return splits[0], splits[1]


def cells(train: DomainData, sizes: Sizes) -> dict[str, DomainData]:
    """The comparison's training sets: all of ``train``, and a seeded ``small_per_class`` of each class."""
    small = per_class_indices(train.labels, len(train.classes), sizes.small_per_class, 0, "10 % cell: ")
    return {"full": train, "10pct": train.subset(small)}


# ----------------------------------------------------------------------------- the comparison
def config(sizes: Sizes, device: torch.device, train: DomainData, root: str | None, method: str,
           alpha: float | None, epochs: int, seed: int = 0) -> RunConfig:
    """The one RunConfig of a comparison run (a floor uses the same, untrained)."""
    return RunConfig(
        data=Data(train.name, root=root), encoder=sizes.encoder,
        method=Method(method, scale="paper", options=METHOD_OPTIONS.get(method, {})), mixing=Mixing(alpha=alpha),
        optim=Optim(epochs=epochs, batch_size=min(sizes.batch, len(train))),
        runtime=Runtime(device=str(device), progress=False, threads=sizes.threads, **SETTING),
        evaluation=Evaluation(("linear", "knn"), sizes.probe_epochs), seed=seed)


def protocol(sizes: Sizes, parts: dict[str, DomainData], budget_s: float) -> dict[str, Any]:
    """What the comparison runs, fixed before any run: written to runs.json first, epochs filled in by the rule."""
    return dict(
        cells={name: dict(n_train=len(part), steps_per_epoch=len(part) // min(sizes.batch, len(part)),
                          per_class=None if name == "full" else sizes.small_per_class) for name, part in parts.items()},
        methods=list(METHODS), alphas=list(ALPHAS), seeds=list(SEEDS), encoder=dict(kind=sizes.encoder.kind,
                                                                                    size=sizes.encoder.size),
        batch=sizes.batch, setting=SETTING, method_options=METHOD_OPTIONS, method_scale="paper",
        probes=dict(names=["linear", "knn"], linear_epochs=sizes.probe_epochs, knn_k=200, on="the run's device"),
        order="cell by cell (10 % first), then method, then alpha (baseline, i-Mix), then seed",
        epochs_rule=EPOCHS_RULE, max_epochs=sizes.max_epochs, budget_s=budget_s, epochs=None, written_at=now())


def epochs_per_cell(remaining_s: float, steps: dict[str, int], step_s: dict[str, float], eval_s: dict[str, float],
                    one_off_s: float, runs_per_cell: int, max_epochs: int) -> dict[str, int]:
    """EPOCHS_RULE: equal training seconds per run, the same epochs for every run of a cell (see the rule's text)."""
    n_runs = runs_per_cell * len(steps)
    spare = MARGIN * remaining_s - runs_per_cell * sum(eval_s.values()) - n_runs * one_off_s
    share = max(0.0, spare) / n_runs
    slowest = max(step_s.values())
    return {cell: int(min(max_epochs, max(1, math.floor(share / (steps[cell] * slowest))))) for cell in steps}


def floors(report: Report, sizes: Sizes, device: torch.device, parts: dict[str, DomainData], test: DomainData,
           root: str | None) -> dict[str, float]:
    """The never-trained encoder's scores per cell (what pretraining must beat); their eval seconds feed the rule."""
    seconds = {}
    for name, part in parts.items():
        started = now()
        result = engine.floor(config(sizes, device, part, root, METHODS[0], None, 1), part, test)
        report.add("floors", dict(cell=name, linear=result.linear, knn=result.knn, eval_seconds=result.eval_seconds,
                                  started_at=started))
        seconds[name] = result.eval_seconds
    return seconds


def run_one(sizes: Sizes, device: torch.device, cell: str, part: DomainData, test: DomainData, root: str | None,
            method: str, alpha: float | None, epochs: int, seed: int) -> dict[str, Any]:
    """One comparison run through the engine, as a JSON record (its config included)."""
    cfg = config(sizes, device, part, root, method, alpha, epochs, seed)
    started = now()
    result = engine.run(cfg, part, test)
    h = result.history
    return dict(cell=cell, method=method, alpha=alpha, seed=seed, epochs=epochs, n_train=len(part),
                steps_per_epoch=len(part) // cfg.optim.batch_size, status="done", linear=result.linear,
                knn=result.knn, train_accuracy=result.train_accuracy, pretrain_seconds=result.pretrain_seconds,
                eval_seconds=result.eval_seconds, epoch_seconds=h.epoch_seconds, epoch_loss=h.epoch_loss,
                started_at=started, finished_at=now(), config=cfg.as_dict())


def gains(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """i-Mix minus baseline, per cell, method and seed, for each probe (only where both runs finished)."""
    done = {(r["cell"], r["method"], r["seed"], r["alpha"]): r for r in records if r["status"] == "done"}
    out = []
    for (cell, method, seed, alpha), imix in done.items():
        base = done.get((cell, method, seed, None))
        if alpha is None or base is None:
            continue
        out.append(dict(cell=cell, method=method, seed=seed, alpha=alpha,
                        **{f"{k}_gain": imix[k] - base[k] for k in ("linear", "knn")}))
    return out


def comparison(report: Report, sizes: Sizes, device: torch.device, parts: dict[str, DomainData], test: DomainData,
               root: str | None, speed: dict[str, Any], deadline: float) -> None:
    """Floors, the rule's epochs (written before the first run), then every run, each written as it finishes."""
    eval_s = floors(report, sizes, device, parts, test, root)
    steps = {name: cell["steps_per_epoch"] for name, cell in report.doc["protocol"]["cells"].items()}
    inputs = dict(remaining_s=deadline - time.monotonic(), steps=steps, step_s=speed["step_s"], eval_s=eval_s,
                  one_off_s=speed["one_off_s"], runs_per_cell=len(METHODS) * len(ALPHAS) * len(SEEDS),
                  max_epochs=sizes.max_epochs)
    report.doc["protocol"].update(epochs=epochs_per_cell(**inputs), rule_inputs=inputs)
    epochs = report.doc["protocol"]["epochs"]
    report.doc["protocol"]["epochs_set_at"] = now()
    report.write()
    for cell, method, alpha, seed in itertools.product(sorted(parts, key=lambda c: c != "10pct"), METHODS, ALPHAS, SEEDS):
        if time.monotonic() > deadline:
            record = dict(cell=cell, method=method, alpha=alpha, seed=seed, status="skipped",
                          reason="past the session's deadline (--budget-min)")
        else:
            try:
                record = run_one(sizes, device, cell, parts[cell], test, root, method, alpha, epochs[cell], seed)
            except Exception as err:  # noqa: BLE001  (a diverged run, say, must not cost the others)
                record = dict(cell=cell, method=method, alpha=alpha, seed=seed, status="failed", error=repr(err)[-800:])
        report.doc.setdefault("runs", []).append(record)
        report.doc["gains"] = gains(report.doc["runs"])
        report.write()  # once per record, the gains with it
