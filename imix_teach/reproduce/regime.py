"""The paper's regime at CPU scale: little data, long training, no augmentation, on a fixed grid.

    imix-teach reproduce --preset regime        # prints its time estimate, then runs what is left

i-Mix is a regulariser: the paper finds it helps most when the pretext task is easy to over-fit,
with few images (Fig. 2, Table 2), long training (Fig. 1) and no augmentation (Table 3). This grid
measures that on CIFAR-10 with the course's small ConvNet, for N-pair and MoCo, with and without
i-Mix, over three seeds, and reports every cell. :func:`protocol` is the one source of its settings;
:func:`grid` turns it into runs of the one grid runner (:mod:`.runner`), which writes it to
``<out>/protocol.json`` before the first run and refuses a folder whose protocol differs, so the
grid cannot drift between sittings. :mod:`.regime_report` writes ``summary.csv``, ``table.md`` and
the figures from the records.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any


from ..config import quick_mode
from ..data import WEAK
from ..run_config import Data, Encoder, Evaluation, Method, Mixing, Optim, RunConfig, Runtime
from .grid import VARIANTS, Grid, GridRun, cpu_settings_text, settings_hash
from .regime_report import summary_rows, write_report

# The grid ran in the NCHW layout (the library's CPU default then); its runs, and live_cell's, keep it so that
# a rerun on the grid's machine gives the committed numbers (pretrain's "auto" now trains CPUs channels_last).
LAYOUT = False


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
        encoder=["small", sizes["width"]], methods=["npair", "moco"], method_kwargs=cpu_settings_text(),
        batch_size=sizes["batch_size"], lr=Optim(batch_size=sizes["batch_size"]).base_lr, momentum=Optim.momentum,
        weight_decay=Optim.weight_decay,
        warmup="min(10, epochs // 10) epochs of linear warm-up, then cosine to 0 (the library's schedule)",
        steps_per_epoch="n_train // batch_size (the last partial batch is dropped)",
        tau=0.2, alpha=1.0, lam="one lam ~ Beta(alpha, alpha) per batch (Algorithm 1); only the anchor view is mixed",
        inputmix="per view: x' = (0.5 l1 + 0.5) x_i + 0.5 l2 x_j + 0.5 l3 x_k, (l1, l2, l3) ~ Dirichlet(1, 1, 1)",
        augmentations=dict(
            none="both views are the evaluation transform (uint8 -> float, normalised): identical views",
            weak=dict(crop_scale=list(WEAK["scale"]), crop_ratio=list(WEAK["ratio"]), flip=WEAK["flip"], colour="none"),
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


def run(p: dict[str, Any], augmentation: str, per_class: int, epochs: int, sweep: str, method: str, variant: str,
        seed: int) -> GridRun:
    """One run of the grid, keyed ``regime/none/pc100/ep200/npair/imix/seed0/<settings hash>``."""
    s, h = p["settings"], settings_hash(p["settings"])
    imix, inputmix = VARIANTS[variant]
    size = dict(image_size=s["image_size"])
    config = RunConfig(
        data=Data(s["dataset"], dict(size, per_class=per_class), dict(size, per_class=s["test_per_class"]),
                  augmentation=augmentation),
        encoder=Encoder(*s["encoder"]), method=Method(method, tau=s["tau"], scale="cpu"),
        mixing=Mixing(alpha=s["alpha"] if imix else None, inputmix=inputmix),
        optim=Optim(epochs=epochs, batch_size=s["batch_size"], lr=s["lr"], momentum=s["momentum"],
                    weight_decay=s["weight_decay"]),
        runtime=Runtime(channels_last=LAYOUT, progress=False),
        evaluation=Evaluation(("linear", "knn"), s["probes"]["linear_epochs"]), seed=seed)
    labels = dict(preset="regime", augmentation=augmentation, per_class=per_class, epochs=epochs, sweep=sweep,
                  method=method, variant=variant, seed=seed, alpha=config.mixing.alpha, inputmix=inputmix,
                  settings_hash=h)
    key = f"regime/{augmentation}/pc{per_class}/ep{epochs}/{method}/{variant}/seed{seed}/{h}"
    return GridRun(key, config, labels, kind=(method, augmentation, variant))


def grid(quick: bool = False, *, p: dict[str, Any] | None = None) -> Grid:
    """Every run of the protocol (``p``, default :func:`protocol`), seed-major (all of seed 0 first), so a
    partial grid covers every cell."""
    p = protocol(quick) if p is None else p
    s = p["settings"]
    runs = [run(p, aug, c["per_class"], c["epochs"], c["sweep"], m, v, seed)
            for seed in p["seeds"] for c in _unique_cells(p["cells"])
            for m in s["methods"] for aug, variants in s["variants"].items() for v in variants]
    # No checkpoint inside a run: runs last minutes, and a checkpoint after each of 700 one-step epochs would
    # cost more than it saves. A run stopped midway is run again from its start.
    return Grid(p["name"], tuple(runs), _report, protocol=p, checkpoint_runs=False)


def _report(out: Path, records: Sequence[dict[str, Any]], g: Grid) -> None:
    write_report(out, records, g.protocol, len(g.runs))


def _unique_cells(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen, out = set(), []
    for c in cells:
        if (c["per_class"], c["epochs"]) not in seen:
            seen.add((c["per_class"], c["epochs"]))
            out.append(c)
    return out


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
    from .. import engine
    from .runner import execute

    quick = quick_mode() if quick is None else quick
    p = protocol(quick)
    if quick:
        per_class, epochs, seeds = 8, 1, list(seeds)[:2]
    cache = engine.DataCache()
    runs = [run(p, augmentation, per_class, epochs, "live", method, v, seed) for seed in seeds for v in variants]
    runs = [GridRun(r.key, r.config.replace(threads=1), r.labels, r.kind) for r in runs]
    try:
        engine.load_data(runs[0].config.replace(root=root).data, cache)
    except FileNotFoundError as err:
        say(f"CIFAR-10 is not available here, so this cell trains nothing ({err}).")
        return []
    records = []
    for r in runs:
        record = execute(r, cache, root=str(root) if root is not None else None)
        records.append(record)
        say(f"seed {r.config.seed} | {r.labels['variant']:14s} | linear {100 * record['linear']:5.1f}% | "
            f"kNN {100 * record['knn']:5.1f}% | {record['pretrain_seconds'] + record['eval_seconds']:.0f} s")
    return summary_rows(records, p)
