"""The paper's title claim at CPU scale: i-Mix on speech and tables, with and without augmentation, on a fixed grid.

    imix-teach reproduce --preset domains      # prints its time estimate, then runs what is left

"A Domain-Agnostic Strategy": the same few lines should help on spectrograms and table rows as on
images. This grid pretrains N-pair, MoCo and BYOL with and without i-Mix on FSDD (spoken digits) and
on CovType and HIGGS, each with its domain's own augmentation and with none (then also i-Mix +
InputMix), at three pretext-data sizes where the data allows it (a fixed step budget, so less data
means more passes), over 3 seeds (5 for the cheap tables), and scores each cell against a never-trained encoder.
:func:`protocol` is the one source of its settings; :func:`grid` turns it into runs of the one grid
runner (:mod:`.runner`); :mod:`.domains_report` writes ``summary.csv``, ``floors.csv``, ``table.md``
and a figure per domain.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ..config import quick_mode
from ..run_config import Data, Encoder, Evaluation, Method, Mixing, Optim, RunConfig, Runtime
from .grid import VARIANTS, Grid, GridRun, cpu_settings_text, settings_hash

AUGMENTATIONS = {"domain": ["baseline", "imix"], "none": ["baseline", "imix", "imix+inputmix"]}


def _datasets(quick: bool) -> dict[str, dict[str, Any]]:
    """Per dataset: its encoder, batch, the paper's tau and alpha, the pretext sizes, the step budget, seeds."""
    if quick:
        return {
            "fsdd": dict(domain="speech", encoder=["small", 4], batch_size=16, tau=dict(domain=0.5, none=0.2), alpha=1.0,
                         sizes=dict(per_class=[2, 4]), steps=4, probe="linear", seeds=[0, 1], test="30 test clips",
                         test_options=dict(per_class=3)),
            "covtype": dict(domain="tabular", encoder=["mlp", 1 / 128], batch_size=32, tau=dict(domain=0.1, none=0.1),
                            alpha=2.0, sizes=dict(train_limit=[64, 128]), steps=4, probe="linear", seeds=[0, 1],
                            test="500 seeded test rows", test_limit=500),
            "higgs": dict(domain="tabular", encoder=["mlp", 1 / 128], batch_size=32, tau=dict(domain=0.1, none=0.1),
                          alpha=2.0, sizes=dict(train_limit=[128]), steps=4, probe="least_squares", seeds=[0, 1, 2],
                          test="500 seeded test rows", test_limit=500),
        }
    return {
        "fsdd": dict(domain="speech", encoder=["small", 16], batch_size=64, tau=dict(domain=0.5, none=0.2), alpha=1.0,
                     sizes=dict(per_class=[27, 90, 270]), steps=600, probe="linear", seeds=[0, 1, 2],
                     test="all 300 test clips (index 0-4 of each speaker and digit)"),
        "covtype": dict(domain="tabular", encoder=["mlp", 1 / 16], batch_size=512, tau=dict(domain=0.1, none=0.1),
                        alpha=2.0, sizes=dict(train_limit=[1134, 3402, 11340]), steps=440, probe="linear",
                        seeds=[0, 1, 2, 3, 4], test="every test row of the offline part"),
        "higgs": dict(domain="tabular", encoder=["mlp", 1 / 16], batch_size=512, tau=dict(domain=0.1, none=0.1),
                      alpha=2.0, sizes=dict(train_limit=[8787]), steps=340, probe="least_squares",
                      seeds=[0, 1, 2, 3, 4], test="all 2,197 test rows"),
    }


def protocol(quick: bool = False) -> dict[str, Any]:
    """The grid's protocol as JSON-ready data: settings, cells, seeds and how they were chosen.

    quick: a tiny grid with the same structure for tests and CI (its numbers mean nothing).
    """
    datasets = _datasets(quick)
    cells = []
    for name, d in datasets.items():
        (option, sizes), = d["sizes"].items()
        for size in sizes:
            n = size * 10 if option == "per_class" else size  # FSDD has 10 balanced classes
            cells.append(dict(dataset=name, size=n, option=option, value=size,
                              epochs=max(1, round(d["steps"] / max(1, n // d["batch_size"])))))
    settings = dict(
        datasets={k: {f: v for f, v in d.items() if f != "seeds"} for k, d in datasets.items()},
        methods=["npair", "moco", "byol"], method_kwargs=cpu_settings_text(), augmentations=AUGMENTATIONS,
        views=dict(domain="the dataset's own augmentation: speech amplitude, speed, pitch, time stretch, time shift and "
                          "noise (each p = 0.5), then a 32x32 log-mel; tables masking noise p = 0.2 (CovType: the 10 "
                          "numeric columns, the loader's default; HIGGS: every column)",
                   none="both views are the evaluation transform: identical views (Table 3's setting); for speech "
                        "the log-mel of every training clip is computed once"),
        lr="0.125 * batch_size / 256", momentum=Optim.momentum, weight_decay=Optim.weight_decay,
        warmup="min(10, epochs // 10) epochs of linear warm-up, then cosine to 0 (the library's schedule)",
        lam="one lam ~ Beta(alpha, alpha) per batch (Algorithm 1); only the anchor view is mixed",
        inputmix="per view: x' = (0.5 l1 + 0.5) x_i + 0.5 l2 x_j + 0.5 l3 x_k, (l1, l2, l3) ~ Dirichlet(1, 1, 1)",
        probes=dict(linear="frozen encoder, standardised features, SGD 100 epochs, lr from {0.01, 0.1, 1} on a 20 % "
                           "held-out part, then refit (evaluate.linear_probe)", linear_epochs=5 if quick else 100,
                    least_squares="closed-form linear regression to one-hot labels with the pseudo-inverse (HIGGS, "
                                  "the paper's protocol)", knn="weighted cosine kNN, k = min(200, n_train), T = 0.1",
                    train="the pretext subset itself, labelled (pretext and downstream data are the same, as the paper's)",
                    floor="the never-trained encoder of each seed (the weights every run of that seed starts from), "
                          "scored the same way on each pretext size"),
    )
    return dict(
        name="domains-quick" if quick else "domains",
        question="Does i-Mix help on speech and tables as on images, with each domain's augmentation and without "
                 "any, and more with less pretext data (the paper's Table 1, Table 3, Table 2 and Fig. 2)?",
        settings=settings, cells=cells, seeds={k: d["seeds"] for k, d in datasets.items()},
        hyperparameters="alpha and tau per domain as the paper has them (speech alpha 1, tau 0.5 with augmentation "
                        "and 0.2 without; tables alpha 2, tau 0.1), because the claim under test is the paper's "
                        "with its own settings; heads and EMA are the library's CPU settings, as in the regime grid",
        data_sweep="a fixed budget of steps per dataset (FSDD 600, CovType 440, HIGGS 340 at its one size), so that "
                   "fewer rows means more passes over them: epochs = max(1, round(budget / steps per epoch))",
        calibration="Before this protocol: timing runs only (`imix-teach reproduce --preset domains --threads 1 "
                    "--estimate-steps 3`: 3 steps of each kind of run on each dataset; no accuracy was computed), "
                    "which estimated the grid at about 1.7 hours of one thread, within the 4-hour budget; 5 seeds "
                    "where a run is cheap (CovType, HIGGS), 3 for FSDD. Nothing was tuned after any result of this "
                    "grid was seen.",
        reporting="every cell and seed is run and reported in summary.csv and floors.csv, favourable or not",
    )


def _config(p: dict[str, Any], cell: dict[str, Any], augmentation: str, method: str, variant: str,
            seed: int) -> RunConfig:
    d = p["settings"]["datasets"][cell["dataset"]]
    imix, inputmix = VARIANTS[variant]
    train = {"per_class": cell["value"]} if cell["option"] == "per_class" else {}
    data = Data(cell["dataset"], train, dict(d.get("test_options", {})), test_limit=d.get("test_limit"),
                train_limit=cell["value"] if cell["option"] == "train_limit" else None, augmentation=augmentation)
    probes = (d["probe"], "knn")
    return RunConfig(data=data, encoder=Encoder(*d["encoder"]), method=Method(method, tau=d["tau"][augmentation]),
                     mixing=Mixing(alpha=d["alpha"] if imix else None, inputmix=inputmix),
                     optim=Optim(epochs=cell["epochs"], batch_size=d["batch_size"]),
                     runtime=Runtime(channels_last=False, progress=False),
                     evaluation=Evaluation(probes, p["settings"]["probes"]["linear_epochs"]), seed=seed)


def grid(quick: bool = False, *, p: dict[str, Any] | None = None) -> Grid:
    """Every run of the protocol (training runs and each cell's floor), seed-major so a partial grid covers
    every cell; keys ``domains/fsdd/none/n270/ep14/npair/imix/seed0/<settings hash>``."""
    p = protocol(quick) if p is None else p
    h, runs = settings_hash(p["settings"]), []
    for seed in range(max(len(s) for s in p["seeds"].values())):
        for cell in p["cells"]:
            if seed not in p["seeds"][cell["dataset"]]:
                continue
            where = f"domains/{cell['dataset']}"
            floor = _config(p, cell, "none", "npair", "baseline", seed)
            runs.append(GridRun(f"{where}/n{cell['size']}/floor/seed{seed}/{h}", floor,
                                _labels(cell, "-", "-", "floor", seed, h), kind=(cell["dataset"], "floor"), floor=True))
            for aug, variants in p["settings"]["augmentations"].items():
                for m in p["settings"]["methods"]:
                    for v in variants:
                        key = f"{where}/{aug}/n{cell['size']}/ep{cell['epochs']}/{m}/{v}/seed{seed}/{h}"
                        runs.append(GridRun(key, _config(p, cell, aug, m, v, seed), _labels(cell, aug, m, v, seed, h),
                                            kind=(cell["dataset"], aug, m, v)))
    return Grid(p["name"], tuple(runs), _report, protocol=p, checkpoint_runs=False)


def _labels(cell: dict[str, Any], augmentation: str, method: str, variant: str, seed: int, h: str) -> dict[str, Any]:
    return dict(preset="domains", dataset=cell["dataset"], augmentation=augmentation, size=cell["size"],
                epochs=cell["epochs"], method=method, variant=variant, seed=seed, settings_hash=h)


def _report(out: Path, records: Sequence[dict[str, Any]], g: Grid) -> None:
    from .domains_report import write_report

    write_report(out, records, g.protocol, len(g.runs))


def live_cell(dataset: str, augmentation: str, size: int, method: str, seeds: Iterable[int] = (0, 1, 2), *,
              quick: bool | None = None, root: str | os.PathLike | None = None,
              say: Callable[[str], None] = print) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run one cell of the grid here, exactly as the grid ran it (its runs, settings and keys; one CPU
    thread), with the cell's floor; returns (rows, floor rows) in ``summary.csv``'s form, or ([], [])
    with a notice when the dataset is missing. quick (default ``IMIX_QUICK``): the quick protocol's
    first size of the dataset and two seeds, a smoke test whose numbers mean nothing.
    """
    from .. import engine
    from .domains_report import summary_rows
    from .runner import execute

    quick = quick_mode() if quick is None else quick
    g = grid(quick)
    if quick:
        size, seeds = next(c["size"] for c in g.protocol["cells"] if c["dataset"] == dataset), list(seeds)[:2]
    wanted = [r for r in g.runs if r.config.seed in set(seeds) and r.labels["dataset"] == dataset
              and r.labels["size"] == size and (r.floor or (r.labels["augmentation"], r.labels["method"]) ==
                                                (augmentation, method))]
    if not wanted:
        raise ValueError(f"argument size: the grid has no {dataset} cell of size {size} with {augmentation!r} "
                         f"augmentation and {method!r}; its sizes: {[c['size'] for c in g.protocol['cells']]}")
    cache, records = engine.DataCache(), []
    try:
        engine.load_data(wanted[0].config.replace(root=root).data, cache)
    except FileNotFoundError as err:
        say(f"{dataset} is not available here, so this cell trains nothing ({err}).")
        return [], []
    for r in wanted:
        run = GridRun(r.key, r.config.replace(threads=1), r.labels, r.kind, floor=r.floor)
        record = execute(run, cache, root=str(root) if root is not None else None)
        records.append(record)
        probe = "least_squares" if record["least_squares"] is not None else "linear"
        say(f"seed {r.config.seed} | {r.labels['variant']:14s} | {probe} {100 * record[probe]:5.1f}% | "
            f"kNN {100 * record['knn']:5.1f}% | {record['pretrain_seconds'] + record['eval_seconds']:.0f} s")
    return summary_rows(records)
