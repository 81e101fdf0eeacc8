"""Where the CPU speed path (``imix_teach.accel``) helps: 16 and 32 px, 1 and 2 threads, both layouts.

    python benchmarks/accel_cases.py --json results/benchmarks/accel_cases.json

One i-Mix N-pair training step (``train.train_step``: two augmented views, i-Mix, forward, loss,
backward, SGD) of the small ConvNet (width 32, as notebooks 03-05), batch 128 of random uint8
images, timed with the network's own layers ("plain") and inside ``accel.swapped`` ("speed"), in
alternating rounds in one process (a slow phase of a shared machine hits both). For channels_last
batches (``pretrain``'s default on a CPU) the speed path is the fused batch norm -> ReLU -> max-pool
kernels and the layout-keeping average pool; for NCHW (``channels_last=False``, the regime grid's
layout) the max-pool's channels_last forward. ``speedup`` is the median over rounds of plain / speed
wall time in the same round; ``accel.MEASURED`` cites these numbers and ``accel.choose`` keeps the
speed path to the cases where it is at least ``accel.HELPS``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from contextlib import ExitStack
from datetime import datetime, timezone

import torch

from imix_teach import accel
from imix_teach.data.augment import ImageAugment
from imix_teach.methods import build_method
from imix_teach.models import SmallConvNet
from imix_teach.train import Mixing, StepOptions, train_step

BATCH = 128


class Stepper:
    """One model and its SGD, stepping on a fixed pool of images; ``speed``: inside ``accel.swapped``."""

    def __init__(self, size: int, channels_last: bool, speed: bool, stack: ExitStack):
        torch.manual_seed(0)
        self.model = build_method("npair", SmallConvNet(3, 32), proj_hidden=256, proj_dim=64)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        if speed:
            stack.enter_context(accel.swapped(self.model, channels_last))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.0625, momentum=0.9, weight_decay=1e-4)
        self.x = torch.randint(0, 256, (BATCH, 3, size, size), dtype=torch.uint8,
                               generator=torch.Generator().manual_seed(1))
        self.augment = ImageAugment((size, size), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
        self.gen = torch.Generator().manual_seed(2)
        self.options = StepOptions(Mixing(alpha=1.0), channels_last=channels_last)

    def seconds(self, steps: int) -> float:
        """Wall seconds for ``steps`` training steps."""
        tic = time.perf_counter()
        for _ in range(steps):
            train_step(self.model, self.x, self.augment, self.opt, self.gen, self.options)
        return time.perf_counter() - tic


def case(size: int, threads: int, channels_last: bool, rounds: int, steps: int) -> dict:
    """Plain and speed step times in alternating rounds; speedup = median of plain / speed per round."""
    torch.set_num_threads(threads)
    with ExitStack() as stack:
        plain, speed = Stepper(size, channels_last, False, stack), Stepper(size, channels_last, True, stack)
        plain.seconds(2), speed.seconds(2)  # warm-up: oneDNN's kernels, the C library, the allocator
        times = {"plain": [], "speed": []}
        for _ in range(rounds):
            for name, s in (("plain", plain), ("speed", speed)):
                times[name].append(s.seconds(steps) / steps)
    ratios = [p / s for p, s in zip(times["plain"], times["speed"])]
    return dict(layout="channels_last" if channels_last else "nchw", size=size, threads=threads,
                speedup=statistics.median(ratios), speedup_rounds=ratios,
                plain_step_s=statistics.median(times["plain"]), speed_step_s=statistics.median(times["speed"]))


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=3, help="steps per configuration per round")
    p.add_argument("--sizes", default="16,32")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if accel.kernel.library() is None:
        sys.exit("the fused kernels did not build here (no C compiler?): nothing to measure")
    tic, rows, load = time.perf_counter(), [], os.getloadavg()  # the 1, 5 and 15 min load before
    for size in (int(s) for s in args.sizes.split(",")):
        for threads in (int(t) for t in args.threads.split(",")):
            for channels_last in (True, False):
                rows.append(case(size, threads, channels_last, args.rounds, args.steps))
                r = rows[-1]
                print(f"{r['layout']:13s} {size:2d} px {threads} thread(s): plain {r['plain_step_s'] * 1e3:6.1f} ms, "
                      f"speed {r['speed_step_s'] * 1e3:6.1f} ms, speedup {r['speedup']:.2f}x "
                      f"({min(r['speedup_rounds']):.2f}-{max(r['speedup_rounds']):.2f})", flush=True)
    meta = dict(command="python " + " ".join([os.path.relpath(__file__)] + sys.argv[1:]),
                date=datetime.now(timezone.utc).isoformat(timespec="seconds"), torch=torch.__version__,
                cpus=os.cpu_count(), platform=platform.platform(), cpu_capability=torch.backends.cpu.get_cpu_capability(),
                load_average_before=load, load_average_after=os.getloadavg(), batch=BATCH, rounds=args.rounds, steps_per_round=args.steps,
                wall_s=time.perf_counter() - tic)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(meta, rows=rows), fh, indent=1)
    return rows


if __name__ == "__main__":
    main()
