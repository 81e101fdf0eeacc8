"""imix-teach's training step against lightly's canonical pipeline, side by side, on one CPU thread.

    pip install -e ".[bench]"            # lightly (benchmark only, never a runtime dependency)
    python benchmarks/vs_lightly.py --json results/benchmarks/vs_lightly_cpu.json

What is timed, for both libraries: one SimCLR/N-pair (or MoCo) training step = two augmented
views of a batch + forward + loss + backward + SGD (+ the momentum update and queue for MoCo),
batch 128 of 32 px CIFAR-10 training images (real ones, read with ``imix_teach.data.load``; random
uint8 images only when no CIFAR-10 copy is found, and the output says so), the same small ConvNet
backbone (``models.build_encoder(shape, "small")``: SmallConvNet width 32, 128 features), the same SGD (lr
0.0625 = 0.125 * 128 / 256, momentum 0.9, weight decay 1e-4), tau 0.2, one torch thread. Every
configuration is timed in alternating rounds in one process (a slow phase of a shared machine
hits all of them) and the median round is reported as images/s, with the ratio imix-teach / lightly.

**lightly** (its documented pipeline): a map-style dataset returns each image as a PIL image (as
``torchvision.datasets.CIFAR10`` does) and ``SimCLRTransform`` turns it into two views, one sample
at a time, through a ``torch.utils.data.DataLoader`` (num_workers=0, i.e. in this thread; shuffle,
drop_last) that collates them; then ``backbone -> SimCLRProjectionHead(128, 256, 64)`` on each view
and ``NTXentLoss`` (SimCLR's 2N-1-way loss). MoCo: ``MoCoProjectionHead(128, 256, 64)``, deep-copied
momentum backbone and head (``deactivate_requires_grad``), ``update_momentum(m=0.99)`` before each
step, keys ``.detach()``-ed, ``NTXentLoss(memory_bank_size=(4096, 64))``.

**imix-teach**: the raw uint8 batch is indexed from memory and ``train.train_step`` draws two views
with the library's batched augmentation (``data.augment``: the whole batch at once, one
``grid_sample`` for crop + flip, vectorised jitter), then the method: ``NPair`` (N-pair loss,
projection head 256-64 with BN, as SimCLRProjectionHead), with i-Mix (``alpha=1``: one
Beta(1, 1) lam, anchors mixed with a permutation, mixed virtual labels) or without; ``MoCo``
(EMA 0.99 key encoder under ``no_grad``, queue of 4096 keys, (N+K)-way loss), with i-Mix or not.

Augmentations, like with like: lightly runs ``SimCLRTransform(input_size=32, cj_strength=0.5,
gaussian_blur=0.0, normalize=CIFAR-10 mean/std)``, its documented setting for CIFAR: random resized
crop (scale 0.08-1, aspect 3/4-4/3, antialiased), horizontal flip p=0.5, colour jitter
0.4/0.4/0.4/0.1 with p=0.8, grayscale p=0.2, no blur, normalisation. imix-teach's CIFAR
augmentation has the same parameters. Differences: imix-teach applies jitter in a fixed order
(torchvision draws a random order per image), clamps crop boxes that do not fit instead of
re-drawing them, and resamples crops bilinearly without antialiasing; lightly's first-version
SimCLR head is the same as imix-teach's (Linear-BN-ReLU-Linear), but its MoCo v2 head has no BN
(imix-teach's MoCo head has one), and its memory-bank loss is MoCo's (K+1)-way, imix-teach's
(N+K)-way (every in-batch key is a negative too, which i-Mix needs).

imix-teach's ``default`` rows are what ``pretrain`` does by default on a CPU: image batches and the
model in the channels_last layout (``channels_last="auto"``), trained inside
``imix_teach.accel.speed_path``, which at 32 px swaps the backbone's batch norm -> ReLU -> max-pool
blocks for the fused CPU kernels (``imix_teach/accel/bn_relu_pool.c``, built with the system's C
compiler on first use; the same function to float rounding) and its average pool for one that keeps
the gradient's layout, and tells glibc to keep freed memory for the next step (process-wide, so
lightly's rounds run with it too). lightly's rows feed the same backbone (stock ``torch.nn`` layers)
NCHW batches, so they run PyTorch's layers, as its pipeline would.
``--layouts default,unfused,plain,nchw,compile`` adds rows with the fused kernels off (the speed path
without its C kernels, as where no compiler is found), ``plain`` (channels_last, the network's own
layers: no speed path at all), ``pretrain(channels_last=False)`` (NCHW, the layout the committed
regime grid ran in, with the speed path's NCHW max-pool where it helps) and ``compile=True`` on top
of the default, labelled as such.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone

import torch
from torch import nn

from imix_teach import accel
from imix_teach.methods import method_settings
from imix_teach.models import build_encoder
from imix_teach.data import load
from imix_teach.data.augment import ImageAugment
from imix_teach.data.image import CIFAR_STATS
from imix_teach.methods import build_method
from imix_teach.train import StepOptions, train_step
from imix_teach.train import Mixing

BATCH, SIZE, TAU, LR, MOMENTUM, WD, EMA, QUEUE = 128, 32, 0.2, 0.125 * 128 / 256, 0.9, 1e-4, 0.99, 4096
HIDDEN, PROJ = 256, 64  # the library's CPU head (METHODS[...].settings("cpu"))


def images(per_class: int, root: str | None) -> tuple[torch.Tensor, ImageAugment, str]:
    """uint8 (N, 3, 32, 32) CIFAR-10 training images and the library's augmentation for them."""
    try:
        d = load("cifar10", "train", root=root, download=False, per_class=per_class, image_size=SIZE)
        return d.inputs, d.augmenter, f"CIFAR-10 training images ({len(d)}, {per_class} per class)"
    except FileNotFoundError as err:
        mean, std = CIFAR_STATS["cifar10"]
        x = torch.randint(0, 256, (10 * per_class, 3, SIZE, SIZE), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(0))
        print(f"NOTE: no CIFAR-10 copy found ({err}); timing on SYNTHETIC random uint8 images", file=sys.stderr)
        return x, ImageAugment((SIZE, SIZE), mean, std), "SYNTHETIC random uint8 images (no CIFAR-10 copy found)"


def sgd(model: nn.Module) -> torch.optim.SGD:
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=LR, momentum=MOMENTUM,
                           weight_decay=WD)


# ----------------------------------------------------------------------------- lightly
class PILImages(torch.utils.data.Dataset):
    """Item i -> transform(PIL image i), as torchvision's CIFAR10 dataset serves it."""

    def __init__(self, x: torch.Tensor, transform: Callable):
        from PIL import Image

        self.pil = [Image.fromarray(a) for a in x.permute(0, 2, 3, 1).numpy()]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pil)

    def __getitem__(self, i: int):
        return self.transform(self.pil[i]), 0


class Lightly:
    """lightly's SimCLR or MoCo: SimCLRTransform per sample in a DataLoader, its head and NTXentLoss."""

    def __init__(self, method: str, x: torch.Tensor):
        from lightly.loss import NTXentLoss
        from lightly.models.modules import MoCoProjectionHead, SimCLRProjectionHead
        from lightly.models.utils import deactivate_requires_grad
        from lightly.transforms import SimCLRTransform

        mean, std = CIFAR_STATS["cifar10"]
        transform = SimCLRTransform(input_size=SIZE, cj_strength=0.5, gaussian_blur=0.0,
                                    normalize=dict(mean=list(mean), std=list(std)))
        self.loader = torch.utils.data.DataLoader(PILImages(x, transform), batch_size=BATCH, shuffle=True,
                                                  drop_last=True, num_workers=0)
        self.batches = iter(())
        torch.manual_seed(0)
        self.backbone = build_encoder((3, SIZE, SIZE), "small")
        dim = self.backbone.out_dim
        self.moco = method == "moco"
        head = MoCoProjectionHead if self.moco else SimCLRProjectionHead
        self.head = head(dim, HIDDEN, PROJ)
        self.model = nn.Sequential(self.backbone, self.head)
        if self.moco:
            self.key_backbone, self.key_head = copy.deepcopy(self.backbone), copy.deepcopy(self.head)
            deactivate_requires_grad(self.key_backbone)
            deactivate_requires_grad(self.key_head)
        self.criterion = NTXentLoss(temperature=TAU, memory_bank_size=(QUEUE, PROJ) if self.moco else 0)
        self.opt = sgd(self.model)

    def batch(self):
        views = next(self.batches, None)
        if views is None:
            self.batches = iter(self.loader)
            views = next(self.batches)
        return views[0]

    def step(self) -> None:
        from lightly.models.utils import update_momentum

        x0, x1 = self.batch()
        if self.moco:
            update_momentum(self.backbone, self.key_backbone, m=EMA)
            update_momentum(self.head, self.key_head, m=EMA)
            loss = self.criterion(self.model(x0), self.key_head(self.key_backbone(x1)).detach())
        else:
            loss = self.criterion(self.model(x0), self.model(x1))
        loss.backward()
        self.opt.step()
        self.opt.zero_grad()


# ----------------------------------------------------------------------------- imix-teach
class ImixTeach:
    """imix-teach's one training step (train.train_step) on raw uint8 batches with its batched augmentation."""

    def __init__(self, method: str, imix: bool, x: torch.Tensor, augment: ImageAugment, layout: str = ""):
        torch.manual_seed(0)
        encoder = build_encoder((3, SIZE, SIZE), "small")
        kwargs = method_settings(method, "cpu", len(x), proj_hidden=HIDDEN, proj_dim=PROJ)
        if method == "moco":
            kwargs.update(queue_size=QUEUE, momentum=EMA)
        self.model = build_method(method, encoder, tau=TAU, **kwargs)
        self.model.train()
        channels_last = layout != "nchw"  # what pretrain's channels_last="auto" does on a CPU
        self.fused = layout != "unfused"
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        if "compile" in layout:
            self.model.encoder.compile()
        # what pretrain does on a CPU (the malloc setting is process-wide: lightly's rounds get it too)
        path = accel.speed_path(self.model, x, torch.device("cpu"), channels_last, compile="compile" in layout)
        self.speed = contextlib.ExitStack()  # open while the benchmark runs
        self.speed.enter_context(contextlib.nullcontext() if layout == "plain" else path)
        self.opt = sgd(self.model)
        self.options = StepOptions(Mixing(alpha=1.0 if imix else None), channels_last=channels_last)
        self.x, self.augment, self.gen = x, augment, torch.Generator().manual_seed(0)
        self.order, self.at = torch.randperm(len(x), generator=self.gen), 0

    def step(self) -> None:
        if self.at + BATCH > len(self.x):
            self.order, self.at = torch.randperm(len(self.x), generator=self.gen), 0
        idx = self.order[self.at:self.at + BATCH]
        self.at += BATCH
        lib = accel.kernel.library()
        accel.kernel._lib = lib if self.fused else None  # "unfused": PyTorch's layers for this row only
        try:
            train_step(self.model, self.x[idx], self.augment, self.opt, self.gen, self.options)
        finally:
            accel.kernel._lib = lib


def flops_per_image(method: str, imix: bool, x: torch.Tensor, augment: ImageAugment) -> float:
    """FLOPs of one training step per image (forward + backward of both views; convolutions and matmuls, as
    ``torch.utils.flop_counter`` counts them), from one step of the NCHW model: the layout changes
    how fast the step runs, not what it computes."""
    from torch.utils.flop_counter import FlopCounterMode

    stepper = ImixTeach(method, imix, x, augment, "nchw")
    with FlopCounterMode(display=False) as counter:
        stepper.step()
    stepper.speed.close()
    return counter.get_total_flops() / BATCH


# ----------------------------------------------------------------------------- timing
LAYOUTS = ("", "unfused", "plain", "nchw", "compile")  # imix-teach: pretrain's default (channels_last, the speed
# path), the same without the fused kernels, channels_last without the speed path, NCHW, default + compile
LIGHTLY = {"npair": "simclr", "moco": "moco"}  # imix-teach's method -> the lightly pipeline it is compared with


def configs(methods: list[str], layouts: list[str]) -> dict[str, tuple]:
    """name -> (library, method, i-Mix, layout): lightly's baseline first, then imix-teach without/with i-Mix."""
    out = {}
    for m in methods:
        out[f"lightly {LIGHTLY[m]}"] = ("lightly", LIGHTLY[m], False, "")
        for layout in layouts:
            for imix in (False, True):
                out[f"imix-teach {m}{' + i-Mix' if imix else ''}{f' ({layout})' if layout else ''}"] = (
                    "imix-teach", m, imix, layout)
    return out


def build(config: tuple, x: torch.Tensor, augment: ImageAugment):
    library, method, imix, layout = config
    return Lightly(method, x) if library == "lightly" else ImixTeach(method, imix, x, augment, layout)


def timed(stepper, steps: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for ``steps`` steps."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        stepper.step()
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(cfgs: dict, x: torch.Tensor, augment: ImageAugment, rounds: int, steps: int, warmup: int) -> dict:
    """images/s of each configuration in ``rounds`` alternating rounds of ``steps`` steps; ratios to lightly.

    The ratio is the median over rounds of (imix-teach images/s / lightly images/s in the same round);
    ``cpu_ratio`` the same from CPU time, which other processes on a shared machine disturb less.
    """
    steppers = {}
    for name, c in cfgs.items():
        tic = time.perf_counter()
        steppers[name] = build(c, x, augment)
        timed(steppers[name], warmup)  # includes torch.compile's compilation for the compile rows
        steppers[name].setup_s = time.perf_counter() - tic
    wall: dict[str, list[float]] = {n: [] for n in steppers}
    cpu: dict[str, list[float]] = {n: [] for n in steppers}
    for r in range(rounds):
        for name, s in steppers.items():
            w, c = timed(s, steps)
            wall[name].append(BATCH * steps / w)
            cpu[name].append(BATCH * steps / c)
        print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{n} {v[-1]:.0f}" for n, v in wall.items()),
              file=sys.stderr, flush=True)
    rows = {}
    for name, c in cfgs.items():
        row = dict(library=c[0], method=c[1], imix=c[2], layout=c[3] or "default", images_per_s=statistics.median(wall[name]),
                   images_per_s_rounds=wall[name], cpu_images_per_s=statistics.median(cpu[name]),
                   setup_and_warmup_s=steppers[name].setup_s)
        if c[0] == "imix-teach":
            base = f"lightly {LIGHTLY[c[1]]}"
            row["versus"] = base
            row["ratio_rounds"] = [a / b for a, b in zip(wall[name], wall[base])]
            row["ratio"] = statistics.median(row["ratio_rounds"])
            row["cpu_ratio"] = statistics.median(a / b for a, b in zip(cpu[name], cpu[base]))
        rows[name] = row
    return rows


def table(rows: dict) -> str:
    lines = ["| configuration | images/s | vs | ratio | ratio per round (min-max) | CPU-time ratio | GFLOP/s | of peak |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        flops = (f" {r['gflop_per_s']:.0f} |" if "gflop_per_s" in r else " |") + (
            f" {100 * r['peak_fraction']:.0f} % |" if "peak_fraction" in r else " |")
        if "ratio" in r:
            lines.append(f"| {name} | {r['images_per_s']:.0f} | {r['versus']} | **{r['ratio']:.2f}x** "
                         f"| {min(r['ratio_rounds']):.2f}-{max(r['ratio_rounds']):.2f} | {r['cpu_ratio']:.2f}x |" + flops)
        else:
            lines.append(f"| {name} | {r['images_per_s']:.0f} | | | | |" + flops)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    global SIZE  # --size sets it for images(), ImixTeach and Lightly
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=7, help="alternating rounds (the median is reported)")
    p.add_argument("--steps", type=int, default=5, help="training steps per configuration per round")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--per-class", type=int, default=128, help="CIFAR-10 training images per class to cycle through")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--methods", default="npair,moco", help="imix-teach methods: npair (vs lightly's SimCLR), moco")
    p.add_argument("--layouts", default="default", help="imix-teach settings, comma-separated: default "
                   "(pretrain's: channels_last on a CPU, the speed path), unfused (the same, its C kernels off), "
                   "plain (channels_last, no speed path), nchw (channels_last=False), compile (default + compile=True)")
    p.add_argument("--root", default=None, help="data root (default: $IMIX_DATA, else the cache)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--size", type=int, default=SIZE, help="image size in px (the notebooks train at 16)")
    p.add_argument("--peak-gflops", type=float, default=None, help="the machine's FP32 peak over the threads used, "
                   "GFLOP/s: each imix-teach row then gives its fraction (e.g. 157 for 2 cores x 2.45 GHz x 32 "
                   "FLOP/cycle, AVX-512 with two FMA units)")
    args = p.parse_args(argv)
    SIZE = args.size
    torch.set_num_threads(args.threads)
    x, augment, what = images(args.per_class, args.root)
    methods = [m for m in args.methods.split(",") if m]
    layouts = ["" if v == "default" else v for v in args.layouts.split(",") if v]
    for name, values, known in (("--methods", methods, LIGHTLY), ("--layouts", layouts, LAYOUTS)):
        if any(v not in known for v in values):
            p.error(f"argument {name}: got {values}, choose from {', '.join(v or 'default' for v in known)}")
    import lightly

    tic, load = time.perf_counter(), os.getloadavg()  # other processes' load: 1, 5, 15 min
    rows = measure(configs(methods, layouts), x, augment, args.rounds, args.steps, args.warmup)
    for name, (library, method, imix, _) in configs(methods, layouts).items():
        if library == "imix-teach":
            flops = flops_per_image(method, imix, x, augment)
            rows[name].update(mflop_per_image=flops / 1e6, gflop_per_s=rows[name]["images_per_s"] * flops / 1e9)
            if args.peak_gflops:
                rows[name]["peak_fraction"] = rows[name]["gflop_per_s"] / args.peak_gflops
    meta = dict(command="python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__)] + sys.argv[1:]),
                date=datetime.now(timezone.utc).isoformat(timespec="seconds"), torch=torch.__version__,
                lightly=lightly.__version__, threads=torch.get_num_threads(), cpus=os.cpu_count(),
                platform=platform.platform(), python=platform.python_version(), data=what, batch=BATCH,
                image_size=SIZE, rounds=args.rounds, steps_per_round=args.steps, wall_s=time.perf_counter() - tic,
                fused_kernels=accel.kernel.library() is not None, peak_gflops=args.peak_gflops,
                load_average_before=load, load_average_after=os.getloadavg())
    print(f"{what}; batch {BATCH}, {SIZE} px, {meta['threads']} thread(s), torch {meta['torch']}, lightly "
          f"{meta['lightly']}; median of {args.rounds} rounds x {args.steps} steps; {meta['wall_s']:.0f} s; fused "
          f"CPU kernels {'on' if meta['fused_kernels'] else 'UNAVAILABLE (no C compiler): PyTorch layers'}\n")
    print(table(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(meta, rows=rows), fh, indent=1)
    return rows


if __name__ == "__main__":
    main()
