"""CPU seconds per pretraining epoch of each notebook's training call (its full-mode settings), old code vs new.

    python benchmarks/notebook_training.py --before ../main --after . --rounds 4 --epochs 4

Full reruns of every notebook are too slow for a shared machine, so this times the call each
notebook's full mode repeats (one thread, ``--epochs`` epochs, CPU time of the process, which
other jobs disturb less than wall time; after one untimed epoch, so that one-time costs such as
lazy imports are not spread over a few epochs), once with the ``imix_teach`` of ``--before`` and once
with that of ``--after`` (each a checkout's root, put first on PYTHONPATH of a fresh process), in
alternating order, and prints the median before/after and the median of the paired ratios.

01: supervised MixUp classifier (SmallConvNet width 32, CIFAR-10 1,000 images at 16 px);
02: N-pair on the digits (16 px, 1 channel); 03/04/05: N-pair/MoCo/BYOL + i-Mix on the course's CIFAR
protocol (100 per class, 16 px, the default augmentation); 06: N-pair + i-Mix on FSDD spectrograms;
07: N-pair + i-Mix without augmentation (the regime grid's setting); 08: N-pair + i-Mix, width 16.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CASES = ("01", "02", "03", "04", "05", "06", "07", "08")


def cpu_seconds_per_epoch(case: str, epochs: int) -> float:
    """Pretrain one notebook's training call for ``epochs`` epochs; CPU seconds per epoch (its set-up included)."""
    import torch

    from imix_teach.data import load
    from imix_teach.models import build_encoder

    try:  # today's engine, or the experiment module of a checkout from before it
        from imix_teach.data import NoAugment
        from imix_teach.engine import run
        quiet = dict(probes=(), progress=False)
    except ImportError:
        from imix_teach.experiment import run
        from imix_teach.reproduce.regime import NoAugment
        quiet = dict(evaluate=())

    torch.set_num_threads(1)
    if case in ("02", "06"):
        name, train_opts, test_opts = ("digits", {}, {}) if case == "02" else ("fsdd", dict(per_class=60), dict(per_class=30))
    else:
        name, train_opts, test_opts = "cifar10", dict(per_class=100, image_size=16), dict(per_class=200, image_size=16)
    train = load(name, "train", download=False, **train_opts)
    test = load(name, "test", download=False, **test_opts)
    for n in (1, epochs):  # one untimed epoch first: lazy imports and the fused kernels' build are paid once
        tic = time.process_time()
        if case == "01":
            from imix_teach.supervised import supervised_augment, train_classifier

            train_classifier(train, test, alpha=1.0, epochs=n, batch_size=128, augment=supervised_augment(train))
        else:
            method = {"04": "moco", "05": "byol"}.get(case, "npair")
            extra = dict(augment=NoAugment(train.transform)) if case == "07" else {}
            if case == "08":
                torch.manual_seed(0)
                extra = dict(encoder=build_encoder(tuple(train.input_shape), "small", 16))
            run(method, train, test, alpha=None if case == "02" else 1.0, epochs=n, batch_size=128,
                tau=0.5 if case == "06" else 0.2, **quiet, **extra)
    return (time.process_time() - tic) / epochs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", help="root of the checkout to compare against (its imix_teach/); required")
    p.add_argument("--after", default=".", help="root of the checkout being measured")
    p.add_argument("--rounds", type=int, default=4, help="processes per checkout, in alternating order")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    cases = args.cases.split(",")
    if args._child:
        print(json.dumps({c: cpu_seconds_per_epoch(c, args.epochs) for c in cases}))
        return
    if not args.before:
        p.error("argument --before: give the root of the checkout to compare against, e.g. --before ../main")
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    for r in range(args.rounds):
        for which in (("before", "after") if r % 2 == 0 else ("after", "before")):
            root = os.path.abspath(getattr(args, which))
            cmd = [sys.executable, os.path.abspath(__file__), "--_child", "--epochs", str(args.epochs), "--cases", args.cases]
            out = subprocess.run(cmd, env=dict(os.environ, PYTHONPATH=root), cwd=root, check=True, capture_output=True, text=True)
            runs[which].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("| notebook | CPU s/epoch before | after | ratio (median of pairs) |\n|---|---|---|---|")
    for c in cases:
        before, after = ([x[c] for x in runs[k]] for k in ("before", "after"))
        ratio = statistics.median(b / a for b, a in zip(before, after))
        print(f"| {c} | {statistics.median(before):.3f} | {statistics.median(after):.3f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
