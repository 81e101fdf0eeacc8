"""The paper's regime at CPU scale: little data, long training, no augmentation, on a fixed grid.

    imix-teach reproduce --preset regime        # prints its time estimate, then runs what is left

i-Mix is a regulariser: the paper finds it helps most when the pretext task is easy to over-fit,
with few images (Fig. 2, Table 2), long training (Fig. 1) and no augmentation (Table 3). This grid
measures that on CIFAR-10 with the course's small ConvNet, for N-pair and MoCo, with and without
i-Mix, over three seeds, and reports every cell. :func:`protocol` is the one source of its settings:
it is written to ``<out>/protocol.json`` before the first run, and a folder whose protocol differs
is refused, so the grid cannot drift between sittings. Records go to ``<out>/runs.json`` one by one
(the locked, merged store of :mod:`.store`), so a stopped grid resumes where it stopped and two
processes can share it; :mod:`.regime_report` writes ``summary.csv``, ``table.md`` and the figures.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .. import experiment
from ..data import ImageAugment, load
from ..data.base import DomainData
from ..files import write_json
from ..methods import build_method
from ..models import build_encoder
from ..train import NonFiniteLossError, pretrain
from .regime_report import write_report
from .store import ResultStore, check_writable, claimed

# The grid ran in the NCHW layout (the library's CPU default then); its runs, and live_cell's, keep it so that
# a rerun on the grid's machine gives the committed numbers (pretrain's "auto" now trains CPUs channels_last).
LAYOUT = False
VARIANTS = {"baseline": (False, False), "imix": (True, False), "imix+inputmix": (True, True)}  # (i-Mix, InputMix)


def protocol(quick: bool = False) -> dict[str, Any]:
    """The grid's protocol as JSON-ready data: settings, cells, seeds and how they were chosen.

    quick: a tiny grid with the same structure for tests and CI (its numbers mean nothing).
    """
    if quick:
        sizes = dict(image_size=8, test_per_class=10, width=8, probe_epochs=5, batch_size=16)
        epoch_cells, data_cells, seeds = [(8, 1), (8, 2)], [(4, 5), (8, 2)], [0, 1]
    else:
        sizes = dict(image_size=16, test_per_class=None, width=32, probe_epochs=100, batch_size=128)
        # Epoch sweep at 100 images per class; data sweep at about 700 steps (100 epochs of that set).
        epoch_cells = [(100, 25), (100, 50), (100, 100), (100, 200)]
        data_cells, seeds = [(25, 700), (50, 233), (100, 100), (250, 37)], [0, 1, 2]
    # A cell on both sweeps (100 images/class, 100 epochs) is listed twice and run once.
    cells = [dict(sweep="epochs", per_class=p, epochs=e) for p, e in epoch_cells]
    cells += [dict(sweep="data", per_class=p, epochs=e) for p, e in data_cells]
    settings = dict(
        dataset="cifar10", image_size=sizes["image_size"], test_per_class=sizes["test_per_class"],
        encoder=["small", sizes["width"]], methods=["npair", "moco"],
        method_kwargs="the library's CPU settings, METHODS[m].settings('cpu', n_train): projection 256-64; MoCo "
                      "EMA 0.99 and a queue of max(64, min(4096, n_train // 2)) keys",
        batch_size=sizes["batch_size"], lr=0.125 * sizes["batch_size"] / 256, momentum=0.9, weight_decay=1e-4,
        warmup="min(10, epochs // 10) epochs of linear warm-up, then cosine to 0 (the library's schedule)",
        steps_per_epoch="n_train // batch_size (the last partial batch is dropped)",
        tau=0.2, alpha=1.0, lam="one lam ~ Beta(alpha, alpha) per batch (Algorithm 1); only the anchor view is mixed",
        inputmix="per view: x' = (0.5 l1 + 0.5) x_i + 0.5 l2 x_j + 0.5 l3 x_k, (l1, l2, l3) ~ Dirichlet(1, 1, 1)",
        augmentations=dict(
            none="both views are the evaluation transform (uint8 -> float, normalised): identical views",
            weak=dict(crop_scale=[0.2, 1.0], crop_ratio=[0.75, 4 / 3], flip=0.5, colour="none"),
        ),
        variants=dict(none=["baseline", "imix", "imix+inputmix"], weak=["baseline", "imix"]),
        probes=dict(linear=f"frozen encoder, standardised features, SGD {sizes['probe_epochs']} epochs, lr from "
                           "{0.01, 0.1, 1} on a 20 % held-out part, then refit (evaluate.linear_probe)",
                    linear_epochs=sizes["probe_epochs"], knn="weighted cosine kNN, k = min(200, n_train), T = 0.1",
                    test="all 10,000 CIFAR-10 test images" if sizes["test_per_class"] is None
                    else f"{sizes['test_per_class']} test images per class"),
    )
    return dict(
        name="regime-quick" if quick else "regime",
        question="Does i-Mix help more with fewer images, longer training and no augmentation (paper Fig. 1, "
                 "Fig. 2, Table 3), at CPU scale?",
        settings=settings, cells=cells, seeds=seeds,
        lengths="separate runs per training length, each with its own warm-up and cosine schedule (as the paper's "
                "Fig. 1 trains each length anew), not checkpoints of one run",
        data_sweep="a fixed budget of about 700 steps per run (100 epochs of 1,000 images), so that fewer images "
                   "means more passes over them, not less training; epochs = round(700 / steps per epoch)",
        calibration="Before this protocol: the issue that asked for it quoted one cell (N-pair, no augmentation, "
                    "100 per class, 200 epochs, 3 seeds: linear 37.7 -> 41.4 -> 43.0), which is why that cell is in "
                    "the grid; and 3-epoch timing runs of each method and variant (no accuracies) sized the grid to "
                    "about 4 hours of 2-core time. Nothing was tuned after any result of this grid was seen.",
        reporting="every cell and seed is run and reported in summary.csv, favourable or not",
    )


def settings_hash(settings: dict[str, Any]) -> str:
    """10 hex digits naming the settings: a changed setting gives every run a new key."""
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class RegimeRun:
    """One run of the grid: a cell (augmentation, images per class, epochs), a method, a variant, a seed."""

    augmentation: str
    per_class: int
    epochs: int
    sweep: str
    method: str
    variant: str
    seed: int
    settings_hash: str

    @property
    def key(self) -> str:
        """The run's name in ``runs.json``: ``regime/none/pc100/ep200/npair/imix/seed0/<hash>``."""
        return (f"regime/{self.augmentation}/pc{self.per_class}/ep{self.epochs}/{self.method}/{self.variant}/"
                f"seed{self.seed}/{self.settings_hash}")


def plan(p: dict[str, Any], seeds: Iterable[int] | None = None) -> list[RegimeRun]:
    """Every run of protocol ``p``, seed-major (all of seed 0 first), so a partial grid covers every cell."""
    s, h = p["settings"], settings_hash(p["settings"])
    return [RegimeRun(aug, c["per_class"], c["epochs"], c["sweep"], m, v, seed, h)
            for seed in (p["seeds"] if seeds is None else seeds) for c in _unique_cells(p["cells"])
            for m in s["methods"] for aug, variants in s["variants"].items() for v in variants]


def _unique_cells(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen, out = set(), []
    for c in cells:
        if (c["per_class"], c["epochs"]) not in seen:
            seen.add((c["per_class"], c["epochs"]))
            out.append(c)
    return out


class NoAugment:
    """Both views are the evaluation transform: ``augment(x, generator) == transform(x)`` (Table 3's setting)."""

    def __init__(self, transform: Callable[[torch.Tensor], torch.Tensor]):
        self.transform = transform

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.transform(x)


def augmenter(name: str, train: DomainData, settings: dict[str, Any]) -> Callable[..., torch.Tensor]:
    """The view function of augmentation ``name`` ("none" or "weak": crop + flip, no colour) for ``train``."""
    if name == "none":
        return NoAugment(train.transform)
    weak, t = settings["augmentations"]["weak"], train.transformer
    return ImageAugment(tuple(train.input_shape[1:]), t.mean, t.std, scale=tuple(weak["crop_scale"]),
                        ratio=tuple(weak["crop_ratio"]), flip=weak["flip"], jitter_p=0.0, gray_p=0.0)


class RegimeData:
    """CIFAR-10 at the protocol's size, each training subset loaded once; the test set loaded once."""

    def __init__(self, settings: dict[str, Any], root: str | os.PathLike | None = None):
        self.settings, self.root, self._train = settings, root, {}
        self.test = load(settings["dataset"], "test", root=root, image_size=settings["image_size"],
                         per_class=settings["test_per_class"])

    def train(self, per_class: int) -> DomainData:
        """The seeded training subset with ``per_class`` images of each class."""
        if per_class not in self._train:
            self._train[per_class] = load(self.settings["dataset"], "train", root=self.root, per_class=per_class,
                                          image_size=self.settings["image_size"])
        return self._train[per_class]


def execute(run: RegimeRun, data: RegimeData, *, device: str | torch.device | None = None) -> dict[str, Any]:
    """Pretrain and evaluate one run; returns its JSON record (accuracies as fractions).

    No checkpoint inside a run: runs last minutes, and a checkpoint after each of 700 one-step
    epochs would cost more than it saves. A run stopped midway is run again from its start.
    """
    s = data.settings
    train = data.train(run.per_class)
    imix, inputmix = VARIANTS[run.variant]
    torch.manual_seed(run.seed)  # the same seed gives every variant the same initial weights and batches
    encoder = build_encoder(tuple(train.input_shape), s["encoder"][0], s["encoder"][1])
    common = dict(key=run.key, preset="regime", augmentation=run.augmentation, per_class=run.per_class,
                  epochs=run.epochs, sweep=run.sweep, method=run.method, variant=run.variant, seed=run.seed,
                  alpha=s["alpha"] if imix else None, inputmix=inputmix, settings_hash=run.settings_hash,
                  n_train=len(train), n_test=len(data.test), steps=run.epochs * (len(train) // s["batch_size"]),
                  method_kwargs=experiment.small_method_kwargs(run.method, len(train)),
                  torch=torch.__version__, threads=torch.get_num_threads())
    tic = time.perf_counter()
    try:
        r = experiment.run(run.method, train, data.test, alpha=common["alpha"], inputmix=inputmix,
                           augment=augmenter(run.augmentation, train, s), epochs=run.epochs,
                           batch_size=s["batch_size"], seed=run.seed, tau=s["tau"], encoder=encoder,
                           probe_epochs=s["probes"]["linear_epochs"], lr=s["lr"], momentum=s["momentum"],
                           weight_decay=s["weight_decay"], device=device, progress=False,
                           channels_last=LAYOUT)
    except NonFiniteLossError as err:  # recorded, not retried: the report counts it
        return dict(common, linear=None, knn=None, error=str(err), pretrain_seconds=time.perf_counter() - tic,
                    eval_seconds=0.0, finished=_now())
    losses = r.history.epoch_loss
    every = max(1, len(losses) // 50)  # at most about 50 points of the loss curve
    return dict(common, linear=r.linear, knn=r.knn, train_accuracy=r.train_accuracy, final_loss=losses[-1],
                loss_curve=[[e + 1, round(v, 5)] for e, v in enumerate(losses) if e % every == 0 or e == len(losses) - 1],
                pretrain_seconds=r.pretrain_seconds, eval_seconds=time.perf_counter() - tic - r.pretrain_seconds,
                finished=_now())


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def fix_protocol(out: Path, p: dict[str, Any]) -> None:
    """Write ``out/protocol.json`` if it is missing; refuse a folder whose protocol is another one."""
    path = out / "protocol.json"
    if path.exists():
        found = json.loads(path.read_text())
        if found.get("settings") != p["settings"] or found.get("cells") != p["cells"] or found.get("seeds") != p["seeds"]:
            raise ValueError(f"{path} holds another protocol than this version's {p['name']!r} grid: its runs cannot "
                             "be continued with these settings. Choose another --out for a new grid.")
        return
    write_json(path, p)


def estimate_seconds(runs: list[RegimeRun], store: ResultStore, data: RegimeData, steps: int = 3) -> float:
    """Expected seconds for ``runs``: per (method, augmentation, variant), seconds per step from finished
    records where there are some, else timed over ``steps`` steps here; plus the evaluation time."""
    done = [r for r in store.records.values() if r.get("preset") == "regime" and r.get("linear") is not None]
    eval_s = sum(r["eval_seconds"] for r in done) / len(done) if done else None
    total = 0.0
    per_step: dict[tuple[str, str, str], float] = {}
    for run in runs:
        kind = (run.method, run.augmentation, run.variant)
        if kind not in per_step:
            same = [r for r in done if (r["method"], r["augmentation"], r["variant"]) == kind and r["steps"]]
            per_step[kind] = (sum(r["pretrain_seconds"] / r["steps"] for r in same) / len(same) if same
                              else _time_steps(run, data, steps))
        total += per_step[kind] * run.epochs * (len(data.train(run.per_class)) // data.settings["batch_size"])
        if eval_s is None:
            eval_s = _time_eval(data)
        total += eval_s
    return total


def _time_steps(run: RegimeRun, data: RegimeData, steps: int) -> float:
    s, train = data.settings, data.train(run.per_class)
    bs = min(s["batch_size"], len(train))
    x = train.inputs[: bs * steps]
    model = build_method(run.method, build_encoder(tuple(train.input_shape), *s["encoder"]), tau=s["tau"],
                         **experiment.small_method_kwargs(run.method, len(train)))
    imix, inputmix = VARIANTS[run.variant]
    hist = pretrain(model, x, augmenter(run.augmentation, train, s), epochs=2, batch_size=bs,
                    alpha=s["alpha"] if imix else None, inputmix=inputmix, progress=False, channels_last=LAYOUT)
    return hist.epoch_seconds[1] / max(1, len(x) // bs)  # the second epoch: after warm-up costs


def _time_eval(data: RegimeData) -> float:
    from ..evaluate import evaluate_encoder

    s, train = data.settings, data.train(100 if data.settings["test_per_class"] is None else 4)
    tic = time.perf_counter()
    evaluate_encoder(build_encoder(tuple(train.input_shape), *s["encoder"]), train, data.test,
                     probe_epochs=s["probes"]["linear_epochs"])
    return time.perf_counter() - tic


def reproduce_regime(out: str | os.PathLike = "results/regime", *, quick: bool = False,
                     root: str | os.PathLike | None = None, device: str | None = None, max_runs: int | None = None,
                     progress: bool = True, estimate_only: bool = False,
                     say: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run what is left of the grid into ``out`` (printing the time estimate first), then write the report.

    max_runs: stop after this many new runs (continue with the same call later). estimate_only:
    print the estimate and return the finished records without training. Returns the grid's records.
    """
    p, out = protocol(quick), Path(out)
    store = ResultStore(out / "runs.json")
    runs = plan(p)
    todo = [r for r in runs if r.key not in store]
    check_writable(out, store)
    fix_protocol(out, p)
    data = RegimeData(p["settings"], root)
    if todo:
        hours = estimate_seconds(todo, store, data) / 3600
        say(f"{p['name']} grid: {len(runs)} runs, {len(runs) - len(todo)} already in {out / 'runs.json'}, "
            f"{len(todo)} to go: about {hours:.1f} h on this machine with {torch.get_num_threads()} thread(s). "
            "Stop it at any time; the same command continues where it stopped.")
    if estimate_only:
        return store.select(r.key for r in runs)
    bar = tqdm(total=len(runs), initial=len(runs) - len(todo), disable=not progress, desc=p["name"], unit="run")
    done, claims = 0, claimed(todo, out / "locks")
    try:
        for run in claims:
            store.refresh()
            if run.key in store:  # another process finished it while we waited
                bar.update(1)
                continue
            if max_runs is not None and done >= max_runs:
                break
            bar.set_postfix_str(f"{run.augmentation} {run.per_class}/class {run.epochs} ep {run.method} {run.variant} "
                                f"seed {run.seed}")
            store.add(execute(run, data, device=device))
            done += 1
            bar.update(1)
    finally:
        claims.close()
        bar.close()
    with store.lock:
        store.refresh()
        records = store.select(r.key for r in runs)
        if records:
            write_report(out, records, p, len(runs))
    return records


def live_cell(augmentation: str, per_class: int, epochs: int, method: str,
              variants: Iterable[str] = ("baseline", "imix"), seeds: Iterable[int] = (0, 1, 2), *,
              quick: bool | None = None, root: str | os.PathLike | None = None,
              say: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run one cell of the grid here, exactly as the grid ran it (its settings, one CPU thread), and return
    its rows in ``summary.csv``'s form (accuracy in percent); [] with a notice when CIFAR-10 is missing.

    One thread and the NCHW layout, as the grid's processes had: the order of floating-point sums depends on
    both (and on the processor's vector instructions), so on the grid's machine a run gives the committed
    record's numbers, elsewhere numbers a point or so apart. quick (default: ``IMIX_QUICK``):
    the quick protocol's tiny sizes, a smoke test whose numbers mean nothing.
    """
    from ..config import quick_mode
    from .regime_report import summary_rows

    quick = quick_mode() if quick is None else quick
    p = protocol(quick)
    if quick:
        per_class, epochs, seeds = 8, 1, list(seeds)[:2]
    try:
        data = RegimeData(p["settings"], root)
    except FileNotFoundError as err:
        say(f"CIFAR-10 is not available here, so this cell trains nothing ({err}).")
        return []
    threads, records = torch.get_num_threads(), []
    torch.set_num_threads(1)
    try:
        for seed in seeds:
            for variant in variants:
                run = RegimeRun(augmentation, per_class, epochs, "live", method, variant, seed, settings_hash(p["settings"]))
                r = execute(run, data)
                records.append(r)
                say(f"seed {seed} | {variant:14s} | linear {100 * r['linear']:5.1f}% | kNN {100 * r['knn']:5.1f}% | "
                    f"{r['pretrain_seconds'] + r['eval_seconds']:.0f} s")
    finally:
        torch.set_num_threads(threads)
    return summary_rows(records, p)
