"""The regime grid's report: ``summary.csv``, ``table.md`` and the two figures, from ``runs.json``.

    rows = load_summary()                     # the committed results/regime/summary.csv, as dicts
    print(gain_table(rows, "linear"))          # mean ± std per cell, and the i-Mix gain with its spread
    plot_regime(rows, "epochs", load_protocol())   # accuracy against epochs (the analogue of the paper's Fig. 1)

Accuracy is test top-1 in percent. A gain is the mean over seeds of the per-seed difference
(variant − baseline; the same seed gives both the same initial weights and batches), its spread
the std of those differences; it is marked † when the mean ± std bars of the two do not overlap (:data:`DAGGER`),
and "ahead" counts the seeds where the variant is ahead.
"""
from __future__ import annotations

import csv
import io
import json
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from ..files import atomic_write
from ..tables import apart, markdown_table, mean_std, ordered

COLUMNS = ("augmentation", "per_class", "epochs", "method", "variant", "probe", "seed", "accuracy")
PROBES = ("linear", "knn")
PROBE_NAMES = {"linear": "linear probe", "knn": "kNN"}
VARIANT_NAMES = {"baseline": "baseline", "imix": "i-Mix", "imix+inputmix": "i-Mix + InputMix"}
FILES = ("summary.csv", "table.md", "regime_epochs.png", "regime_data.png")


def summary_rows(records: Sequence[dict[str, Any]], p: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (record, probe), in the protocol's order: the columns of ``summary.csv``."""
    rows = []
    for r in records:
        for probe in PROBES:
            value = r.get(probe)
            rows.append(dict(augmentation=r["augmentation"], per_class=r["per_class"], epochs=r["epochs"],
                             method=r["method"], variant=r["variant"], probe=probe, seed=r["seed"],
                             accuracy=None if value is None else round(100 * value, 2)))
    return rows


def write_summary(path: str | os.PathLike, rows: Sequence[dict[str, Any]], columns: Sequence[str] = COLUMNS) -> None:
    """``summary.csv``: the columns of :data:`COLUMNS` (or ``columns``); a diverged run has an empty accuracy."""
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if row[k] is None else row[k]) for k in columns} for row in rows)
    atomic_write(path, text.getvalue())


INTEGERS = ("per_class", "size", "epochs", "seed")  # the columns a summary holds as whole numbers


def read_summary(path: str | os.PathLike) -> list[dict[str, Any]]:
    """A ``summary.csv`` back as rows with ints and floats (None for an empty accuracy)."""
    with open(path, newline="") as fh:
        return [dict(row, **{k: int(row[k]) for k in INTEGERS if k in row},
                     accuracy=float(row["accuracy"]) if row["accuracy"] else None) for row in csv.DictReader(fh)]


HOURS = {"regime": 4, "domains": 2}  # about how long each fixed grid takes on 2 CPU cores, for the error below


def packaged(grid: str = "regime") -> Path:
    """The copy of a fixed grid's summary and protocol installed with the package."""
    return Path(__file__).with_name(f"{grid}_results")


def find_results(start: str | os.PathLike | None = None, grid: str = "regime") -> Path | None:
    """The folder holding the committed ``results/<grid>/summary.csv``: from ``start`` (default the
    working folder) up to the file system's root, as when a notebook runs in ``notebooks/``; else the
    copy installed with the package (Colab, a wheel), else None."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "results" / grid / "summary.csv").is_file():
            return folder / "results" / grid
    return packaged(grid) if (packaged(grid) / "summary.csv").is_file() else None


def load_summary(folder: str | os.PathLike | None = None, grid: str = "regime") -> list[dict[str, Any]]:
    """The grid's rows from ``folder/summary.csv`` (default: :func:`find_results`); a clear error if absent."""
    folder = Path(folder) if folder is not None else find_results(grid=grid)
    if folder is None or not (folder / "summary.csv").is_file():
        raise FileNotFoundError(
            f"results/{grid}/summary.csv was not found here or in any folder above. It is committed in the "
            "course's repository: run from a clone of it (or put its results/ folder beside the notebooks), "
            f"or make it anew with `imix-teach reproduce --preset {grid}` (about {HOURS.get(grid, 4)} hours on 2 "
            "CPU cores).")
    return read_summary(folder / "summary.csv")


def load_protocol(folder: str | os.PathLike | None = None, grid: str = "regime") -> dict[str, Any]:
    """``protocol.json`` beside the summary (default: :func:`find_results`)."""
    folder = Path(folder) if folder is not None else find_results(grid=grid)
    if folder is None:
        load_summary(folder, grid)  # raises the error that says where the results are
    return json.loads((Path(folder) / "protocol.json").read_text())


CELL = ("augmentation", "per_class", "epochs", "method")  # the columns that name a cell of this grid


def cells(rows: Sequence[dict[str, Any]], probe: str,
          keys: Sequence[str] = CELL) -> dict[tuple, dict[str, dict[int, float]]]:
    """{(augmentation, per_class, epochs, method): {variant: {seed: accuracy}}} for one probe, in row order
    (``keys``: another grid's cell columns)."""
    out: dict[tuple, dict[str, dict[int, float]]] = {}
    for row in rows:
        if row["probe"] == probe and row["accuracy"] is not None:
            key = tuple(row[k] for k in keys)
            out.setdefault(key, defaultdict(dict))[row["variant"]][row["seed"]] = row["accuracy"]
    return out


def gain(by_variant: dict[str, dict[int, float]], variant: str) -> dict[str, Any] | None:
    """Gain of ``variant`` over the baseline in one cell: mean and std of per-seed differences, and
    whether the mean ± std bars of the two are apart (|gain| > std(baseline) + std(variant))."""
    base, other = by_variant.get("baseline", {}), by_variant.get(variant, {})
    seeds = sorted(set(base) & set(other))
    if not seeds:
        return None
    diff = mean_std([other[s] - base[s] for s in seeds])
    b, o = [base[s] for s in seeds], [other[s] for s in seeds]
    (mb, sb), (mo, so) = mean_std(b), mean_std(o)
    wins = sum(other[s] > base[s] for s in seeds)  # seeds where the variant is ahead (same seed: same start)
    return dict(gain=mo - mb, spread=diff[1], seeds=len(seeds), apart=apart(b, o), baseline=(mb, sb), variant=(mo, so),
                wins=wins)


def fmt_seeds(values: dict[int, float]) -> str:
    """{seed: accuracy} as "m ± s" (one decimal; a single seed without ±; "–" for none)."""
    if not values:
        return "–"
    m, s = mean_std(list(values.values()))
    return f"{m:.1f} ± {s:.1f}" if len(values) > 1 else f"{m:.1f}"


def fmt_gain(g: dict[str, Any] | None) -> str:
    """A :func:`gain` as "+g ± s", with † where the two bars do not overlap ("–" for none)."""
    return "–" if g is None else f"{g['gain']:+.1f} ± {g['spread']:.1f}{' †' if g['apart'] else ''}"


def fmt_wins(g: dict[str, Any] | None) -> str:
    """The seeds where the variant beats the baseline from the same start, as "3/3" ("" for none)."""
    return "" if g is None else f"{g['wins']}/{g['seeds']}"


DAGGER = ("† = the baseline's and the variant's mean ± std bars do not overlap (|gain| > std(baseline) + "
          "std(variant)): a stricter test than the ± beside the gain, which is the spread of the per-seed differences; "
          "ahead = the seeds where the variant beats the baseline from the same start")


def gain_table(rows: Sequence[dict[str, Any]], probe: str = "linear") -> str:
    """Markdown: one line per (augmentation, images per class, epochs, method), mean ± std and gains."""
    lines = []
    found = cells(rows, probe)
    augs, methods = ordered(k[0] for k in found), ordered(k[3] for k in found)
    for (aug, pc, ep, m) in sorted(found, key=lambda k: (augs.index(k[0]), methods.index(k[3]), k[1], k[2])):
        by = found[aug, pc, ep, m]
        g, gi = gain(by, "imix"), (gain(by, "imix+inputmix") if aug == "none" else None)
        lines.append([aug, pc, ep, m, fmt_seeds(by.get("baseline", {})), fmt_seeds(by.get("imix", {})), fmt_gain(g),
                      fmt_wins(g), fmt_seeds(by.get("imix+inputmix", {})) if aug == "none" else "",
                      fmt_gain(gi) if aug == "none" else "", fmt_wins(gi),
                      max((len(v) for v in by.values()), default=0)])
    header = ["augmentation", "images/class", "epochs", "method", "baseline", "i-Mix", "gain i-Mix", "i-Mix ahead",
              "i-Mix + InputMix", "gain i-Mix + InputMix", "ahead", "seeds"]
    return markdown_table(header, lines)


def quotable(rows: Sequence[dict[str, Any]], keys: Sequence[str] = CELL) -> set[str]:
    """Every number a text may quote from the grid, as this module formats it: each cell's "m ± s" per
    variant and probe, each gain "+g ± s" and "+g" (one decimal), and each single seed's accuracy
    (``keys``: the grid's cell columns)."""
    out = {f"{r['accuracy']:.1f}" for r in rows if r["accuracy"] is not None}
    for probe in ordered(r["probe"] for r in rows):
        for by in cells(rows, probe, keys).values():
            out |= {fmt_seeds(seeds) for seeds in by.values()}
            for variant in ("imix", "imix+inputmix"):
                g = gain(by, variant)
                if g is not None:
                    out |= {f"{g['gain']:+.1f}", f"{g['gain']:+.1f} ± {g['spread']:.1f}"}
    return out


def tally(rows: Sequence[dict[str, Any]], probe: str, variant: str = "imix") -> dict[str, list[tuple]]:
    """The cells where ``variant`` is ahead beyond the spread ("ahead"), behind beyond it ("behind"), or neither."""
    out: dict[str, list[tuple]] = {"ahead": [], "behind": [], "within": []}
    for key, by in cells(rows, probe).items():
        g = gain(by, variant)
        if g is not None:
            out["within" if not g["apart"] else "ahead" if g["gain"] > 0 else "behind"].append((*key, round(g["gain"], 1)))
    return out


def findings(rows: Sequence[dict[str, Any]]) -> list[str]:
    """One sentence per (probe, variant), counted from the rows themselves (so it always matches them)."""
    out = []
    for probe in PROBES:
        for variant in ("imix", "imix+inputmix"):
            t = tally(rows, probe, variant)
            n = sum(map(len, t.values()))
            if not n:
                continue
            best = max(t["ahead"] + t["within"] + t["behind"], key=lambda c: c[-1])
            out.append(f"{PROBE_NAMES[probe]}, {VARIANT_NAMES[variant]} vs baseline: ahead beyond the spread in "
                       f"{len(t['ahead'])} of {n} cells, behind beyond it in {len(t['behind'])}, within it in "
                       f"{len(t['within'])}; largest gain {best[-1]:+.1f} points ({best[0]} augmentation, "
                       f"{best[1]} images/class, {best[2]} epochs, {best[3]}).")
    return out


def plot_regime(rows: Sequence[dict[str, Any]], sweep: str, p: dict[str, Any]) -> Figure:
    """Accuracy (mean ± std over seeds) against epochs (``sweep="epochs"``, Fig. 1's axis) or images per
    class (``"data"``, Fig. 2's): a column per (method, augmentation), a row per probe, a line per variant."""
    along = "epochs" if sweep == "epochs" else "per_class"
    fixed = _sweep_cells(p, sweep)
    panels = list(dict.fromkeys((r["method"], r["augmentation"]) for r in rows))
    fig = Figure(figsize=(3.1 * len(panels), 5.4))  # no pyplot: no backend and no global state
    axes = fig.subplots(len(PROBES), len(panels), squeeze=False, sharey="row")
    colours = dict(zip(VARIANT_NAMES, matplotlib.colormaps["tab10"].colors))
    for i, probe in enumerate(PROBES):
        for j, (method, aug) in enumerate(panels):
            ax = axes[i][j]
            for k, (variant, name) in enumerate(VARIANT_NAMES.items()):
                pts = defaultdict(list)
                for r in rows:
                    if (r["probe"], r["method"], r["augmentation"], r["variant"]) == (probe, method, aug, variant) \
                            and (r["per_class"], r["epochs"]) in fixed and r["accuracy"] is not None:
                        pts[r[along]].append(r["accuracy"])
                if pts:
                    xs = sorted(pts)
                    stats = [mean_std(pts[x]) for x in xs]
                    shifted = [x * 1.04 ** (k - 1) for x in xs]  # side by side, so the bars do not hide each other
                    ax.errorbar(shifted, [m for m, _ in stats], yerr=[s for _, s in stats], marker="o", ms=4, capsize=3,
                                color=colours[variant], label=name)
            ax.set_xscale("log")
            xs = sorted({r[along] for r in rows if (r["per_class"], r["epochs"]) in fixed})
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.minorticks_off()
            ax.grid(alpha=0.3)
            ax.set_title(f"{method}, augmentation {aug}", fontsize=9)
            ax.set_xlabel("epochs (100 images/class)" if sweep == "epochs" else "images per class (~700 steps)",
                          fontsize=8)
            if j == 0:
                ax.set_ylabel(f"test top-1 % ({PROBE_NAMES[probe]})", fontsize=8)
            if i == 0 and j == 0 and ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    fig.suptitle(("Fig. 1 analogue: training length" if sweep == "epochs" else "Fig. 2 analogue: pretext data size")
                 + "; CIFAR-10 16 px, small ConvNet, mean ± std over seeds", fontsize=10)
    fig.tight_layout()
    return fig


def plot_cell(rows: Sequence[dict[str, Any]], title: str = "") -> Figure:
    """One cell's runs: per probe, each variant's mean ± std over seeds (the seeds as grey dots).

    Points, not bars: the y-axis is zoomed to the data, which would make bar lengths misleading.
    """
    fig = Figure(figsize=(7.5, 3.0))
    axes = fig.subplots(1, len(PROBES), squeeze=False)[0]
    colours = dict(zip(VARIANT_NAMES, matplotlib.colormaps["tab10"].colors))
    for ax, probe in zip(axes, PROBES):
        variants = [v for v in VARIANT_NAMES if any(r["variant"] == v and r["probe"] == probe for r in rows)]
        for k, variant in enumerate(variants):
            vals = [r["accuracy"] for r in rows if (r["variant"], r["probe"]) == (variant, probe) and r["accuracy"] is not None]
            m, sd = mean_std(vals)
            ax.errorbar([k], [m], yerr=[sd], fmt="o", ms=7, capsize=5, color=colours[variant])
            ax.scatter([k + 0.12] * len(vals), vals, s=8, color="grey", zorder=3)
        ax.set_xticks(range(len(variants)), [VARIANT_NAMES[v].replace(" + ", "\n+ ") for v in variants], fontsize=8)
        ax.set_xlim(-0.5, len(variants) - 0.5)
        ax.set_ylabel(f"test top-1 % ({PROBE_NAMES[probe]})", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def same_as(live: Sequence[dict[str, Any]], committed: Sequence[dict[str, Any]],
            columns: Sequence[str] = COLUMNS) -> tuple[int, int]:
    """How many of the ``live`` rows have exactly the accuracy of the same run in ``committed``, of how many
    (``columns``: the summary's columns, accuracy last)."""
    key = lambda r: tuple(r[k] for k in columns[:-1])  # noqa: E731
    known = {key(r): r["accuracy"] for r in committed}
    return sum(known.get(key(r)) == r["accuracy"] for r in live), len(live)


def _sweep_cells(p: dict[str, Any], sweep: str) -> set[tuple[int, int]]:
    """(per_class, epochs) of the protocol's cells on one sweep."""
    return {(c["per_class"], c["epochs"]) for c in p["cells"] if c["sweep"] == sweep}


def png_bytes(fig: Figure) -> bytes:
    """A figure as PNG bytes at the reports' 90 dpi."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def write_report(out: str | os.PathLike, records: Sequence[dict[str, Any]], p: dict[str, Any],
                 expected: int) -> dict[str, Path]:
    """``summary.csv``, ``table.md`` (both probes, the findings), ``regime_epochs.png``, ``regime_data.png``.

    expected: how many runs the whole grid has (the table says whether it is complete).
    """
    out = Path(out)
    rows = summary_rows(records, p)
    write_summary(out / "summary.csv", rows)
    status = "complete" if len(records) == expected else f"PARTIAL: {len(records)} of {expected} runs"
    hours = sum(r["pretrain_seconds"] + r["eval_seconds"] for r in records) / 3600
    md = [f"# The paper's regime on CIFAR-10 ({p['name']}, {status})", "", p["question"], "",
          "Test top-1 accuracy in %, mean ± std over seeds; gain = mean ± std of the per-seed difference from the "
          f"baseline; {DAGGER}. Protocol: `protocol.json` beside this file.", ""]
    for probe in PROBES:
        md += [f"## {PROBE_NAMES[probe]}", "", gain_table(rows, probe), ""]
    md += ["## Findings (counted from the table)", "", *[f"- {s}" for s in findings(rows)], "",
           f"Compute: {hours:.2f} h summed over {len(records)} runs, torch {records[0]['torch']}, "
           f"{records[0]['threads']} thread(s) per run."]
    atomic_write(out / "table.md", "\n".join(md) + "\n")
    for sweep in ("epochs", "data"):
        atomic_write(out / f"regime_{sweep}.png", png_bytes(plot_regime(rows, sweep, p)))
    return {name: out / name for name in FILES}
