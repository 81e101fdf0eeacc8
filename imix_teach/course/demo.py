"""``python -m imix_teach.course.demo`` (``make demo``): i-Mix vs. no i-Mix on scikit-learn's digits, over seeds.

Needs no data files and no GPU: N-pair, MoCo v2 and BYOL, each pretrained with and without i-Mix on
the 1,297 training digits (16x16) for 10 epochs with seeds 0, 1 and 2, then a linear probe and a kNN
classifier on the 500 test digits; beside them a never-trained encoder (each seed's initial weights),
the floor that pretraining has to beat. Prints a table of mean ± std over the seeds and one sentence read
from it (where i-Mix helped beyond the spread, where it did not), and saves a figure
(``demo_out/demo.png``). About 2-3 minutes on one CPU thread; ``IMIX_QUICK=1`` runs fewer epochs.

Deterministic on CPU: every random draw is seeded, and the run uses one CPU thread by default
(``--threads``), because the order of floating-point sums in multi-threaded kernels depends on
the thread count, and that alone moved kNN accuracies by about 1 point between machines.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure

from ..config import full_or_quick
from ..data import load
from ..data.base import DomainData
from ..engine import RunResult, floor, run
from ..run_config import RunConfig
from ..tables import apart, format_mean_std, markdown_table

PROBES = {"linear": "linear probe", "knn": "kNN"}
RANDOM_INIT = "random init"
# A probe on which a never-trained encoder already scores this much (percent) has little room left
# to show what pretraining adds: the sentence says so instead of reading its gaps as evidence.
CEILING = 95.0
DEMO_BATCH = 128


def random_init(train: DomainData, test: DomainData, seeds: Sequence[int]) -> list[RunResult]:
    """A never-trained encoder per seed, probed as the pretrained ones are: the very weights :func:`run`
    starts from (:func:`~imix_teach.engine.floor`), so the gap to it is what pretraining did."""
    floors = [floor(RunConfig(seed=seed), train, test) for seed in seeds]
    return [dataclasses.replace(r, config=r.config.replace(name=RANDOM_INIT)) for r in floors]


def _scores(results: Sequence[RunResult], method: str, imix: bool, probe: str) -> list[float]:
    """One accuracy in percent per seed (in seed order) of ``method`` with or without i-Mix."""
    runs = sorted((r for r in results if r.method == method and (r.alpha is not None) == imix), key=lambda r: r.seed)
    return [100 * getattr(r, probe) for r in runs]


def table(results: Sequence[RunResult], reference: Sequence[RunResult]) -> str:
    """Markdown, test top-1 % as mean ± std over seeds: a row per method (baseline and i-Mix per probe),
    then the never-trained encoder (``reference``). Accuracies only: times vary run to run."""
    header = ["method"] + [f"{name} ({v})" for name in PROBES.values() for v in ("baseline", "i-Mix")]
    rows = [[m] + [format_mean_std(_scores(results, m, on, p), scale=1) for p in PROBES for on in (False, True)]
            for m in dict.fromkeys(r.method for r in results)]
    floor = [format_mean_std(_scores(reference, RANDOM_INIT, False, p), scale=1) for p in PROBES]
    rows.append(["random init (no pretraining)"] + [cell for f in floor for cell in (f, "")])
    return markdown_table(header, rows)


def standing(baseline: Sequence[float], imix: Sequence[float]) -> str:
    """Where i-Mix stands against the baseline over the same seeds: "helped" when it is ahead and the
    mean ± std bars do not overlap (:func:`imix_teach.tables.apart`), "ahead within the spread" when it is
    ahead but they overlap, "level" when the means are equal, "behind" when it is behind."""
    gain = statistics.fmean(imix) - statistics.fmean(baseline)
    if gain > 0:
        return "helped" if apart(baseline, imix) else "ahead within the spread"
    return "level" if gain == 0 else "behind"


def _listed(items: list[str]) -> str:
    return ", ".join(items) if items else "none"


def verdict(results: Sequence[RunResult], reference: Sequence[RunResult]) -> str:
    """One sentence read from the numbers: for each method and probe whether i-Mix helped beyond the spread,
    was ahead only within it, level or behind (:func:`standing`), with its gain in points; and, for each probe
    on which the never-trained ``reference`` encoder already reaches :data:`CEILING` %, that it is near its
    ceiling."""
    found: dict[str, list[str]] = {"helped": [], "ahead within the spread": [], "level": [], "behind": []}
    for probe, name in PROBES.items():
        for method in dict.fromkeys(r.method for r in results):
            base, imix = _scores(results, method, False, probe), _scores(results, method, True, probe)
            where = standing(base, imix)
            beyond = where == "behind" and apart(base, imix)
            found[where].append(f"{method} {name} ({statistics.fmean(imix) - statistics.fmean(base):+.1f}"
                                f"{', beyond the spread' if beyond else ''})")
    seeds = len({r.seed for r in results})
    text = (f"Over {seeds} seeds, i-Mix helped beyond the spread (its mean ± std bar clear of the baseline's) for "
            f"{_listed(found.pop('helped'))}")
    clauses = [f"{where} for {_listed(items)}" for where, items in found.items() if items]
    if clauses:
        text += "; it was " + "; ".join(clauses[:-1] + [("and " if len(clauses) > 1 else "") + clauses[-1]])
    for probe, name in PROBES.items():
        floor = statistics.fmean(_scores(reference, RANDOM_INIT, False, probe))
        if floor >= CEILING:
            text += (f"; note that the {name} is near its ceiling on digits: a never-trained encoder already "
                     f"reaches {floor:.1f} %, leaving {100 - floor:.1f} points for pretraining to show")
    return text + "."


def figure(results: Sequence[RunResult], reference: Sequence[RunResult]) -> Figure:
    """Pretraining loss of the first seed, then each probe's mean ± std per method and variant on the
    whole 0-100 % axis, with the never-trained encoder as a dashed line (:func:`imix_teach.course.plots.plot_points`)."""
    from .plots import plot_histories, plot_points  # here, not on top: `imix-teach` imports this module at start

    fig = Figure(figsize=(14, 3.8))  # no pyplot: nothing global to close, no display needed
    axes = fig.subplots(1, 1 + len(PROBES))
    first = min(r.seed for r in results)
    plot_histories([r for r in results if r.seed == first], ax=axes[0])
    axes[0].set_title(f"Pretraining loss, seed {first} (i-Mix solid)", fontsize=10)
    seeds = len({r.seed for r in results})
    for ax, (probe, name) in zip(axes[1:], PROBES.items()):
        plot_points(results, probe, ax=ax, reference=reference, title=f"Digits test accuracy, {name}, {seeds} seeds")
        ax.set_ylabel(f"{name}, test top-1 (%)")
    fig.tight_layout()
    return fig


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=full_or_quick(10, 3))
    parser.add_argument("--methods", default="npair,moco,byol")
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--seeds", type=int, default=3, help="how many seeds (0, 1, ...); at least 2 for a spread")
    parser.add_argument("--out", default="demo_out")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads; the printed numbers depend on it")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.seeds < 2:
        parser.error(f"--seeds must be >= 2 (a mean ± std needs two runs to have a spread), got {args.seeds}")
    return args


def main(argv: list[str] | None = None) -> list[RunResult]:
    """Run the demo with command-line arguments ``argv`` (default: ``sys.argv[1:]``); returns one RunResult
    per method, seed and variant (baseline, i-Mix), in the order printed, then one per seed for the
    never-trained encoder (method ``"random init"``)."""
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    train, test = load("digits", "train"), load("digits", "test")
    seeds = range(args.seeds)
    print(f"digits: {len(train)} train / {len(test)} test images, {args.epochs} epochs, alpha={args.alpha}, "
          f"seeds {', '.join(map(str, seeds))}, {args.threads} CPU thread(s)")
    tic = time.perf_counter()
    results = []
    for method in args.methods.split(","):
        for seed in seeds:
            for alpha in (None, args.alpha):
                r = run(method, train, test, alpha=alpha, epochs=args.epochs, batch_size=DEMO_BATCH, seed=seed,
                        progress=False)
                print(f"  {method:6s} {'i-Mix' if alpha else 'baseline':8s} seed {seed}  linear {100 * r.linear:5.1f}%  "
                      f"kNN {100 * r.knn:5.1f}%  ({r.pretrain_seconds:.0f} s)")
                results.append(r)
    reference = random_init(train, test, seeds)
    print(f"\nTest top-1 %, mean ± std over {args.seeds} seeds:\n\n{table(results, reference)}\n")
    print(verdict(results, reference))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figure(results, reference).savefig(out / "demo.png", dpi=100)
    (out / "demo.json").write_text(json.dumps([r.summary() for r in results + reference], indent=1))
    print(f"\nfigure: {out / 'demo.png'}; numbers: {out / 'demo.json'}; total {time.perf_counter() - tic:.0f} s")
    return results + reference


if __name__ == "__main__":
    main()
