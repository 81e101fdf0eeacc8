"""``python -m imix_teach.demo`` (``make demo``): i-Mix vs. no i-Mix on scikit-learn's digits.

Needs no data files and no GPU: N-pair, MoCo v2 and BYOL, each pretrained with and without
i-Mix on the 1,297 training digits (16x16), then a linear probe and a kNN classifier on the 500
test digits. Prints a table and saves a figure (``demo_out/demo.png``). About 2-3 minutes on a
CPU; ``IMIX_QUICK=1`` runs fewer epochs.

Deterministic on CPU: every random draw is seeded, and the run uses one CPU thread by default
(``--threads``), because the order of floating-point sums in multi-threaded kernels depends on
the thread count, and that alone moved kNN accuracies by about 1 point between machines.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from .config import full_or_quick
from .data import load
from .evaluate import evaluate_encoder
from .experiment import RunResult, run, small_encoder


def _table(results: list[RunResult], random_init: tuple[float, float]) -> str:
    """The Markdown table the README quotes: accuracies only (times vary run to run, so they are printed per run)."""
    lines = [
        "| method | linear probe (baseline) | linear probe (i-Mix) | kNN (baseline) | kNN (i-Mix) |",
        "|---|---|---|---|---|",
    ]
    by = {(r.method, r.alpha is not None): r for r in results}
    for method in dict.fromkeys(r.method for r in results):
        b, i = by[(method, False)], by[(method, True)]
        lines.append(f"| {method} | {100 * b.linear:.1f} | {100 * i.linear:.1f} | {100 * b.knn:.1f} | {100 * i.knn:.1f} |")
    lines.append(f"| random init (no pretraining) | {100 * random_init[0]:.1f} | | {100 * random_init[1]:.1f} | |")
    return "\n".join(lines)


def _figure(results: list[RunResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    methods = list(dict.fromkeys(r.method for r in results))
    colours = dict(zip(methods, plt.get_cmap("tab10").colors))
    for r in results:
        ax_loss.plot(r.history.epoch_loss, color=colours[r.method], ls="-" if r.alpha else "--",
                     label=f"{r.method}{' + i-Mix' if r.alpha else ''}")
    ax_loss.set(xlabel="epoch", ylabel="pretraining loss", title="Loss (i-Mix solid, baseline dashed)")
    ax_loss.legend(fontsize=7)
    width = 0.38
    for k, method in enumerate(methods):
        for j, imix_on in enumerate((False, True)):
            r = next(r for r in results if r.method == method and (r.alpha is not None) == imix_on)
            ax_acc.bar(k + (j - 0.5) * width, 100 * r.knn, width, color=colours[method], alpha=1.0 if imix_on else 0.45,
                       label="i-Mix" if (imix_on and k == 0) else ("baseline" if k == 0 else None))
    ax_acc.set_xticks(range(len(methods)), methods)
    ax_acc.set(ylabel="kNN top-1 (%)", title="Digits test accuracy (kNN)")
    lo = min(100 * r.knn for r in results)
    ax_acc.set_ylim(max(0, lo - 10), 100)
    ax_acc.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[RunResult]:
    """Run the demo with command-line arguments ``argv`` (default: ``sys.argv[1:]``); returns one RunResult
    per method and variant (plain, i-Mix), in the order printed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=full_or_quick(15, 3))
    parser.add_argument("--methods", default="npair,moco,byol")
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="demo_out")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads; the printed numbers depend on it")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    train, test = load("digits", "train"), load("digits", "test")
    print(f"digits: {len(train)} train / {len(test)} test images, {args.epochs} epochs, alpha={args.alpha}")
    tic = time.perf_counter()
    results = []
    for method in args.methods.split(","):
        for alpha in (None, args.alpha):
            r = run(method, train, test, alpha=alpha, epochs=args.epochs, seed=args.seed)
            print(f"  {method:6s} {'i-Mix' if alpha else 'plain':5s}  linear {100 * r.linear:5.1f}%  kNN {100 * r.knn:5.1f}%"
                  f"  ({r.pretrain_seconds:.0f} s)")
            results.append(r)
    torch.manual_seed(args.seed)
    encoder = small_encoder(train.input_shape)
    floor = evaluate_encoder(encoder, train, test)
    random_init = (floor["linear"], floor["knn"])
    table = _table(results, random_init)
    print()
    print(table)
    out = Path(args.out)
    _figure(results, out / "demo.png")
    (out / "demo.json").write_text(json.dumps([r.summary() for r in results], indent=1))
    print(f"\nfigure: {out / 'demo.png'}; numbers: {out / 'demo.json'}; total {time.perf_counter() - tic:.0f} s")
    return results


if __name__ == "__main__":
    main()
