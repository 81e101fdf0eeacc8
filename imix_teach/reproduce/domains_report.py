"""The domains grid's report: ``summary.csv``, ``floors.csv``, ``table.md`` and a figure per dataset.

    rows = load_summary()                    # the committed results/domains/summary.csv, as dicts
    print(gain_table(rows, "fsdd", "linear"))  # mean ± std per cell, the i-Mix gain, its spread, per-seed wins

Accuracy is test top-1 in percent. A gain is the mean over seeds of the per-seed difference from the
baseline (the same seed gives both the same initial weights and batches), its spread the std of those
differences, "3/3" the seeds where the variant is ahead; † marks a cell whose mean ± std bars of
baseline and variant do not overlap. The floor is the never-trained encoder of the same seeds.
"""
from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from ..files import atomic_write
from ..tables import markdown_table, mean_std, ordered
from . import regime_report
from .regime_report import VARIANT_NAMES, cells, fmt_gain, fmt_seeds, fmt_wins, gain, png_bytes, read_summary, write_summary

COLUMNS = ("dataset", "augmentation", "size", "epochs", "method", "variant", "probe", "seed", "accuracy")
FLOOR_COLUMNS = ("dataset", "size", "probe", "seed", "accuracy")
CELL = ("dataset", "augmentation", "size", "epochs", "method")
PROBE_NAMES = {"linear": "linear probe", "least_squares": "least squares", "knn": "kNN"}
DATASET_NAMES = {"fsdd": "FSDD (speech)", "covtype": "CovType (tables)", "higgs": "HIGGS (tables)"}
# The paper's direction for each dataset (Table 1 with augmentation, Table 3 without, both i-Mix ahead).
PAPER = {"fsdd": "Speech Commands (the paper's speech set), Table 1: N-pair 94.9 -> 98.3, MoCo 96.3 -> 98.4, "
                 "BYOL 94.8 -> 98.3; Table 3, no augmentation, MoCo: 76.9 -> 92.8",
         "covtype": "Table 1: i-Mix ahead for all three methods with masking noise",
         "higgs": "Table 1: i-Mix ahead for all three methods with masking noise (least-squares probe)"}


def probes_of(record: dict[str, Any]) -> tuple[str, str]:
    """The two probes a record was scored with: least squares (HIGGS) or linear, and kNN."""
    return ("least_squares" if record.get("least_squares") is not None else "linear", "knn")


def _pct(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 2)


def summary_rows(records: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the rows of ``summary.csv``, the rows of ``floors.csv``): one per (record, probe), in grid order."""
    rows, floors = [], []
    for r in records:
        for probe in probes_of(r):
            if r["variant"] == "floor":
                floors.append(dict(dataset=r["dataset"], size=r["size"], probe=probe, seed=r["seed"],
                                   accuracy=_pct(r[probe])))
            else:
                rows.append(dict({k: r[k] for k in COLUMNS[:-3]}, probe=probe, seed=r["seed"], accuracy=_pct(r[probe])))
    return rows, floors


def floor_of(floors: Sequence[dict[str, Any]], dataset: str, size: int, probe: str) -> list[float]:
    """The never-trained encoder's accuracies (one per seed) for one dataset, size and probe."""
    return [f["accuracy"] for f in floors if (f["dataset"], f["size"], f["probe"]) == (dataset, size, probe)
            and f["accuracy"] is not None]


def quotable(rows: Sequence[dict[str, Any]], floors: Sequence[dict[str, Any]]) -> set[str]:
    """Every number a text may quote from the grid: the cells' means, gains and single seeds (as
    :func:`regime_report.quotable` formats them), and each floor's "m ± s" and single seeds."""
    out = regime_report.quotable(rows, CELL)
    for dataset, size, probe in {(f["dataset"], f["size"], f["probe"]) for f in floors}:
        values = floor_of(floors, dataset, size, probe)
        out |= {fmt_seeds(dict(enumerate(values))), *(f"{v:.1f}" for v in values)}
    return out


def gain_table(rows: Sequence[dict[str, Any]], dataset: str, probe: str,
               floors: Sequence[dict[str, Any]] = ()) -> str:
    """Markdown: one line per (augmentation, size, method) of one dataset and probe."""
    found = {k: v for k, v in cells(rows, probe, CELL).items() if k[0] == dataset}
    augs, methods = ordered(k[1] for k in found), ordered(k[4] for k in found)
    lines = []
    for key in sorted(found, key=lambda k: (augs.index(k[1]), methods.index(k[4]), k[2])):
        _, aug, size, epochs, m = key
        by = found[key]
        g, gi = gain(by, "imix"), gain(by, "imix+inputmix")
        base = floor_of(floors, dataset, size, probe)
        lines.append([aug, size, epochs, m, fmt_seeds(by.get("baseline", {})), fmt_seeds(by.get("imix", {})),
                      fmt_gain(g), fmt_wins(g), fmt_seeds(by.get("imix+inputmix", {})), fmt_gain(gi) if gi else "",
                      fmt_wins(gi), fmt_seeds(dict(enumerate(base))) if base else "–"])
    header = ["augmentation", "pretext size", "epochs", "method", "baseline", "i-Mix", "gain", "i-Mix ahead",
              "i-Mix + InputMix", "gain", "ahead", "never-trained"]
    return markdown_table(header, lines)


def tally(rows: Sequence[dict[str, Any]], dataset: str, probe: str, variant: str = "imix") -> dict[str, list[tuple]]:
    """The cells of one dataset where ``variant`` is ahead beyond the spread, behind beyond it, or within it."""
    out: dict[str, list[tuple]] = {"ahead": [], "behind": [], "within": []}
    for key, by in cells(rows, probe, CELL).items():
        g = gain(by, variant)
        if key[0] == dataset and g is not None:
            out["within" if not g["apart"] else "ahead" if g["gain"] > 0 else "behind"].append((*key, round(g["gain"], 1)))
    return out


def size_trend(rows: Sequence[dict[str, Any]], dataset: str, probe: str) -> dict[str, list[tuple]]:
    """The paper's Fig. 2 direction, per (augmentation, method) series of one dataset: is i-Mix's gain at
    the smallest pretext size larger than at the largest ("less data, more gain") or smaller, and is the
    difference beyond the two gains' spreads ("… beyond")? Series with one size are left out."""
    by_series: dict[tuple, dict[int, dict]] = defaultdict(dict)
    for key, by in cells(rows, probe, CELL).items():
        g = gain(by, "imix")
        if key[0] == dataset and g is not None:
            by_series[key[1], key[4]][key[2]] = g
    out: dict[str, list[tuple]] = {"less data, more gain": [], "less data, less gain": [], "beyond": []}
    for series, by_size in by_series.items():
        if len(by_size) > 1:
            small, large = by_size[min(by_size)], by_size[max(by_size)]
            difference = small["gain"] - large["gain"]
            out["less data, more gain" if difference > 0 else "less data, less gain"].append(series)
            if abs(difference) > small["spread"] + large["spread"]:
                out["beyond"].append(series)
    return out


def _trend_sentence(rows: Sequence[dict[str, Any]], dataset: str, probe: str) -> str | None:
    t = size_trend(rows, dataset, probe)
    n = len(t["less data, more gain"]) + len(t["less data, less gain"])
    if not n:
        return None
    return (f"{DATASET_NAMES.get(dataset, dataset)}, i-Mix ({PROBE_NAMES[probe]}), smallest against largest pretext "
            f"size: the gain is larger with less data in {len(t['less data, more gain'])} of {n} (augmentation, "
            f"method) series, smaller in {len(t['less data, less gain'])}; the difference is beyond the two gains' "
            f"spreads in {len(t['beyond'])}.")


def findings(rows: Sequence[dict[str, Any]]) -> list[str]:
    """One sentence per (dataset, method, variant) on the main probe, and one per dataset on the pretext
    data size (:func:`size_trend`), counted from the rows themselves."""
    out = []
    for dataset in ordered(r["dataset"] for r in rows):
        probe = next(r["probe"] for r in rows if r["dataset"] == dataset)
        for method in ordered(r["method"] for r in rows if r["dataset"] == dataset):
            for variant in ("imix", "imix+inputmix"):
                t = tally([r for r in rows if r["method"] == method], dataset, probe, variant)
                n = sum(map(len, t.values()))
                if n:
                    out.append(f"{DATASET_NAMES.get(dataset, dataset)}, {method}, {VARIANT_NAMES[variant]} "
                               f"({PROBE_NAMES[probe]}): ahead beyond the spread in {len(t['ahead'])} of {n} cells, "
                               f"behind beyond it in {len(t['behind'])}, within it in {len(t['within'])}.")
        out += [sentence for sentence in [_trend_sentence(rows, dataset, probe)] if sentence]
    return out


def plot_dataset(rows: Sequence[dict[str, Any]], floors: Sequence[dict[str, Any]], dataset: str) -> Figure:
    """Accuracy (mean ± std over seeds) against pretext-data size on the main probe: a column per method,
    a row per augmentation, a line per variant, the never-trained encoder dashed."""
    mine = [r for r in rows if r["dataset"] == dataset and r["accuracy"] is not None]
    probe = mine[0]["probe"]
    augs, methods = ordered(r["augmentation"] for r in mine), ordered(r["method"] for r in mine)
    fig = Figure(figsize=(3.0 * len(methods), 2.7 * len(augs)))  # no pyplot: no backend and no global state
    axes = fig.subplots(len(augs), len(methods), squeeze=False, sharey=True)
    colours = dict(zip(VARIANT_NAMES, matplotlib.colormaps["tab10"].colors))
    sizes = sorted({r["size"] for r in mine})
    for i, aug in enumerate(augs):
        for j, method in enumerate(methods):
            ax = axes[i][j]
            for k, (variant, name) in enumerate(VARIANT_NAMES.items()):
                pts = defaultdict(list)
                for r in mine:
                    if (r["probe"], r["augmentation"], r["method"], r["variant"]) == (probe, aug, method, variant):
                        pts[r["size"]].append(r["accuracy"])
                if pts:
                    xs = sorted(pts)
                    stats = [mean_std(pts[x]) for x in xs]
                    ax.errorbar([x * 1.05 ** (k - 1) for x in xs], [m for m, _ in stats], yerr=[s for _, s in stats],
                                marker="o", ms=4, capsize=3, color=colours[variant], label=name)
            base = [mean_std(floor_of(floors, dataset, s, probe))[0] for s in sizes if floor_of(floors, dataset, s, probe)]
            if len(base) == len(sizes):
                ax.plot(sizes, base, ls="--", color="grey", label="never trained")
            ax.set_xscale("log")
            ax.set_xticks(sizes, [str(s) for s in sizes])
            ax.minorticks_off()
            ax.grid(alpha=0.3)
            ax.set_title(f"{method}, augmentation {aug}", fontsize=9)
            ax.set_xlabel("pretext rows/clips (fixed step budget)", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"test top-1 % ({PROBE_NAMES[probe]})", fontsize=8)
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.suptitle(f"{DATASET_NAMES.get(dataset, dataset)}: mean ± std over seeds", fontsize=10)
    fig.tight_layout()
    return fig


def write_report(out: str | os.PathLike, records: Sequence[dict[str, Any]], p: dict[str, Any],
                 expected: int) -> dict[str, Path]:
    """``summary.csv``, ``floors.csv``, ``table.md`` and ``domains_<dataset>.png`` from the grid's records.

    expected: how many runs the whole grid has (the table says whether it is complete).
    """
    out = Path(out)
    rows, floors = summary_rows(records)
    write_summary(out / "summary.csv", rows, COLUMNS)
    write_summary(out / "floors.csv", floors, FLOOR_COLUMNS)
    status = "complete" if len(records) == expected else f"PARTIAL: {len(records)} of {expected} runs"
    hours = sum(r["pretrain_seconds"] + r["eval_seconds"] for r in records) / 3600
    md = [f"# i-Mix across domains ({p['name']}, {status})", "", p["question"], "",
          "Test top-1 accuracy in %, mean ± std over seeds. gain = mean ± std of the per-seed difference from the "
          "baseline (same seed, same start); ahead = seeds where the variant beats the baseline; † = the mean ± std "
          "bars of the two do not overlap; never-trained = the encoder before any pretraining, the cell's floor. "
          "Protocol: `protocol.json` beside this file.", ""]
    files = {name: out / name for name in ("summary.csv", "floors.csv", "table.md")}
    for dataset in ordered(r["dataset"] for r in rows):
        md += [f"## {DATASET_NAMES.get(dataset, dataset)}", "", f"The paper: {PAPER.get(dataset, '')}.", ""]
        for probe in ordered(r["probe"] for r in rows if r["dataset"] == dataset):
            md += [f"### {PROBE_NAMES[probe]}", "", gain_table(rows, dataset, probe, floors), ""]
        name = f"domains_{dataset}.png"
        atomic_write(out / name, png_bytes(plot_dataset(rows, floors, dataset)))
        files[name] = out / name
    md += ["## Findings (counted from the tables)", "", *[f"- {s}" for s in findings(rows)], "",
           f"Compute: {hours:.2f} h summed over {len(records)} runs, torch {records[0]['torch']}, "
           f"{records[0]['threads']} thread(s) per run."]
    atomic_write(out / "table.md", "\n".join(md) + "\n")
    return files


def load_rows(folder: str | os.PathLike | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(summary rows, floor rows) of the committed grid (default: ``find_results(grid="domains")``)."""
    folder = Path(folder) if folder is not None else regime_report.find_results(grid="domains")
    rows = regime_report.load_summary(folder, grid="domains")  # a clear error where there is none
    return rows, read_summary(Path(folder) / "floors.csv")
