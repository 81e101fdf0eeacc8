"""Images/s of SimCLR-style CIFAR augmentation: per-sample torchvision v2 vs the batched torch path.

    python benchmarks/augment_throughput.py                 # CIFAR-10 test images from $IMIX_DATA
    python benchmarks/augment_throughput.py --n 2048 --size 16 --root ../shared/data

- ``v2 per-sample``: ``ImageAugment.torchvision_v2()`` applied image by image in one process
  (what one DataLoader worker does; multiply by the workers you can afford);
- ``batched``: ``DomainData.augment`` on whole batches (one affine grid_sample + vectorised
  jitter), on the CPU and, when available, on CUDA (timed with synchronisation).

Falls back to random uint8 images (and says so) when no CIFAR copy is found.
"""
from __future__ import annotations

import argparse
import time

import torch

from imix_teach.data import ImageAugment, load
from imix_teach.data.image import CIFAR_STATS


def images(n: int, size: int, root: str | None) -> tuple[torch.Tensor, ImageAugment, str]:
    try:
        d = load("cifar10", "test", root=root, download=False, per_class=max(1, n // 10), image_size=size)
        return d.inputs[:n], d.augmenter, "CIFAR-10 test images"
    except FileNotFoundError:
        mean, std = CIFAR_STATS["cifar10"]
        x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        return x, ImageAugment((size, size), mean, std), "random uint8 images (no CIFAR copy found)"


def per_sample(x: torch.Tensor, aug: ImageAugment, repeats: int) -> float:
    pipeline = aug.torchvision_v2()
    torch.manual_seed(0)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.stack([pipeline(img) for img in x])
        best = min(best, time.perf_counter() - start)
    return len(x) / best


def batched(x: torch.Tensor, aug: ImageAugment, batch: int, repeats: int, device: torch.device) -> float:
    x = x.to(device)
    g = torch.Generator(device=device).manual_seed(0)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    aug(x[:batch], g)  # warm-up (CUDA context, kernels)
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(x), batch):
            aug(x[i:i + batch], g)
        sync()
        best = min(best, time.perf_counter() - start)
    return len(x) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1024, help="images per timing run")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=32, help="image side (CIFAR 32; 16 for CPU runs)")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--root", default=None, help="data root (default: $IMIX_DATA, else the cache)")
    args = parser.parse_args()

    x, aug, what = images(args.n, args.size, args.root)
    print(f"{len(x)} {what}, {args.size}x{args.size}, batch {args.batch}, torch threads {torch.get_num_threads()}")
    rows = [("v2 per-sample", "cpu", per_sample(x, aug, args.repeats)),
            ("batched", "cpu", batched(x, aug, args.batch, args.repeats, torch.device("cpu")))]
    if torch.cuda.is_available():
        rows.append(("batched", "cuda", batched(x, aug, args.batch, args.repeats, torch.device("cuda"))))
    base = rows[0][2]
    print(f"{'path':<16}{'device':<8}{'images/s':>12}{'speed-up':>10}")
    for path, device, rate in rows:
        print(f"{path:<16}{device:<8}{rate:>12,.0f}{rate / base:>9.1f}x")


if __name__ == "__main__":
    main()
