"""The results table (``results.md``, ``results.json``) and figure (``results.png``) from ``runs.json``."""
from __future__ import annotations

import io
import json
import os
import platform
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import matplotlib
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..files import atomic_write
from .. import tables
from ..tables import format_mean_std, mean_std
from .grid import Grid
from .presets import PAPER_PROXY, PAPER_SETTING, PAPER_TABLE1, PAPER_UNCERTAIN, PAPER_UNCERTAIN_NOTE, DatasetSpec, Preset

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
    """Which Table 1 row a dataset is shown beside (itself, a proxy, or none)."""
    if dataset in PAPER_PROXY:
        return PAPER_PROXY[dataset][0]
    return dataset if dataset in PAPER_TABLE1 else None


METRIC_NAMES = {"linear": "linear probe", "least_squares": "least squares", "knn": "kNN"}


def markdown_table(rows: Sequence[dict[str, Any]], paper_matches: bool = False) -> str:
    """The results table: ours (mean ± std over seeds, top-1 %) and, separately, the paper's Table 1."""
    paper_head = "paper Table 1, same setting" if paper_matches else "paper Table 1 (ResNet-50, full data, 500-4000 epochs: NOT our setting)"
    header = ["dataset", "method", "metric", "baseline", "i-Mix", "Δ (i-Mix − baseline)", "kNN baseline", "kNN i-Mix",
              "seeds", paper_head]
    return tables.markdown_table(header, [_table_row(row) for row in rows])


def _table_row(row: dict[str, Any]) -> list[str]:
    p, paper = row["primary"], row["paper"]
    delta = "–" if row["delta"] is None else f"{row['delta']:+.1f}"
    ref = "–"
    if paper is not None:
        mark = PAPER_UNCERTAIN.get((row["dataset"], row["method"]), "")
        ref = f"{paper[0]:.1f}{mark} → {paper[1]:.1f}"
        if row["dataset"] in PAPER_PROXY:
            ref += f" ({PAPER_PROXY[row['dataset']][1]})"
    n = str(max(len(row["baseline"].get("seeds", [])), len(row["imix"].get("seeds", []))))
    if row.get("diverged"):
        n += f" ({row['diverged']['baseline']} baseline / {row['diverged']['imix']} i-Mix diverged)"
    return [row["dataset"], row["method"], METRIC_NAMES[p], format_mean_std(row["baseline"].get(p)),
            format_mean_std(row["imix"].get(p)), delta, format_mean_std(row["baseline"].get("knn")),
            format_mean_std(row["imix"].get("knn")), n, ref]


def _notes(preset: Preset, used: dict[str, DatasetSpec]) -> str:
    probe = "/".join(sorted({str(s.template.evaluation.probe_epochs) for s in used.values()}))
    lines = ["Top-1 test accuracy in %, mean ± sample standard deviation over seeds (seeds change the "
             "initial weights, augmentations, batches and mixing; the data subsets are fixed). "
             "Δ = difference of the means. Metric: the paper's protocol (linear probe: frozen encoder, "
             f"standardised features, SGD {probe} epochs, lr picked from {{0.01, 0.1, 1}} on a 20 % held-out part; "
             "HIGGS: closed-form least squares). kNN: weighted cosine kNN, k = 200, T = 0.1.", ""]
    for name, spec in used.items():
        t = spec.template
        lines.append(f"- **{name}** ({spec.domain}): {t.optim.epochs} epochs, batch {t.optim.batch_size}, "
                     f"tau {t.method.tau:g}, i-Mix alpha {t.mixing.alpha:g}, lr {t.optim.base_lr:g}, "
                     f"wd {t.optim.weight_decay:g}, encoder {t.encoder.kind} {t.encoder.size:g}. {spec.notes}")
    mixing = next(iter(used.values())).template.mixing if used else None
    lam = "one lam per sample, max(lam, 1 - lam) (authors' code)" if mixing is not None and mixing.per_sample \
        else "one lam ~ Beta(alpha, alpha) per batch (the paper's choice)"
    lines += ["", f"Mixing: {lam}; only the anchor view is mixed; partners from randperm(N)."]
    if any(s.paper or s.dataset == "fsdd" for s in used.values()):
        lines += ["", "Paper column: Table 1 of Lee et al. (ICLR 2021), baseline → i-Mix, linear evaluation. "
                  + "; ".join(f"{k}: {v}" for k, v in PAPER_SETTING.items() if k in {_paper_key(d) for d in used})
                  + ". " + PAPER_UNCERTAIN_NOTE + " The tabular Table 1 numbers are not in the extracted text, so they are not shown."]
    return "\n".join(lines)


def plot_results(rows: Sequence[dict[str, Any]], path: str | os.PathLike, title: str = "") -> None:
    """One panel per dataset: per method, baseline (open) and i-Mix (filled) mean ± std, seeds as dots.

    Markers, not bars: the y-axis is zoomed to the data, which would make bar lengths misleading.
    """
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig = Figure(figsize=(3.2 * len(datasets) + 0.6, 3.4))  # no pyplot: no backend, no global figure state
    axes = fig.subplots(1, len(datasets), squeeze=False)
    colours = matplotlib.colormaps["tab10"].colors
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


def write_outputs(out: str | os.PathLike, records: Sequence[dict[str, Any]], grid: Grid) -> dict[str, Path]:
    """``results.json`` (summary + config), ``results.md`` (table + notes), ``results.png``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    preset, specs = grid.info["preset"], grid.info["specs"]
    rows = summarize(records)
    expected = len(grid.runs)
    status = "complete" if len(records) == expected else f"PARTIAL: {len(records)} of {expected} runs"
    table = markdown_table(rows, paper_matches=preset.name == "paper")
    md = [f"# i-Mix reproduction, preset `{preset.name}` ({status})", "", preset.description, "", table, "",
          _notes(preset, specs), "",
          f"Compute: {sum(r['pretrain_seconds'] + r['eval_seconds'] for r in records) / 60:.1f} min summed over "
          f"{len(records)} runs (pretraining {sum(r['pretrain_seconds'] for r in records) / 60:.1f} min); "
          f"torch {torch.__version__}, {records[0]['threads']} thread(s), device {records[0]['device']}."]
    paths = {"md": out / "results.md", "json": out / "results.json", "png": out / "results.png"}
    summary = dict(
        preset=preset.name, status=status, runs_expected=expected, runs_found=len(records), rows=rows,
        datasets={name: dict(domain=s.domain, template=s.template.as_dict(), method_options=s.method_options,
                             notes=s.notes) for name, s in specs.items()},
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
