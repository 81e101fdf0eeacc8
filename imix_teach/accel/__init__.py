"""The CPU speed path, apart from the models: :func:`speed_path` swaps layers for faster equivalents while training.

The models are plain ``torch.nn`` layers (``imix_teach.models.SmallConvNet`` is conv, BN, ReLU,
pool blocks). ``pretrain`` trains inside ``with speed_path(...)``, which, on a CPU and only where it
was measured to help (:func:`choose`, the table :data:`MEASURED`), puts in their place:

- :class:`~imix_teach.accel.fused.FusedBNReLUPool` for each batch norm -> ReLU -> 2x2 max-pool of an
  ``nn.Sequential`` (channels_last batches): one C kernel pair, the same function to float rounding;
- :class:`~imix_teach.accel.pools.LayoutKeepingAvgPool` for ``nn.AdaptiveAvgPool2d(1)`` (channels_last);
- :class:`~imix_teach.accel.pools.NCHWMaxPool` for ``nn.MaxPool2d`` (NCHW batches): bit for bit the same;

and keeps freed memory for the next step (:func:`~imix_teach.accel.memory.keep_freed_memory`). On
leaving, the network's own layers are back in their places, with the trained values (the swapped-in
modules share the tensors). ``IMIX_FUSED_CPU=0`` turns the C kernels off.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from . import fused, kernel, memory, pools

__all__ = ["MEASURED", "choose", "speed_path", "swapped"]

# Step time with the network's own layers / with the swaps (> 1: the swaps help), i-Mix N-pair,
# SmallConvNet width 32, batch 128, median of 11 alternating rounds of 5 steps on an idle 2-core AMD EPYC
# (Zen 4, AVX-512) (benchmarks/accel_cases.py, results/benchmarks/accel_cases.json).
# Keyed by (layout, image size in px, torch threads).
MEASURED: dict[tuple[str, int, int], float] = {
    ("channels_last", 16, 1): 1.19,  # 1.10-1.33 over rounds
    ("nchw", 16, 1): 1.10,  # 1.00-1.22 over rounds
    ("channels_last", 16, 2): 1.22,  # 1.05-1.38 over rounds
    ("nchw", 16, 2): 1.06,  # 0.99-1.15 over rounds
    ("channels_last", 32, 1): 1.26,  # 1.17-1.34 over rounds
    ("nchw", 32, 1): 1.06,  # 1.04-1.09 over rounds
    ("channels_last", 32, 2): 1.19,  # 1.18-1.24 over rounds
    ("nchw", 32, 2): 1.05,  # 0.96-1.11 over rounds
}
HELPS = 1.05  # the smallest gain counted as one: single rounds on a 2-core machine scatter by more


def choose(channels_last: bool, size: int | None, threads: int) -> bool:
    """Whether the swaps measurably help a CPU step at this layout, image size (px) and thread count.

    Only the measured cases (16 and 32 px, 1 and 2 threads) where the step got at least ``HELPS``
    faster; everywhere else the network's own layers train.
    """
    return MEASURED.get(("channels_last" if channels_last else "nchw", size, threads), 0.0) >= HELPS


def _swaps(model: nn.Module, channels_last: bool) -> list[tuple[nn.Module, str, nn.Module]]:
    """(parent, child name, replacement) for every layer this layout's speed path replaces in ``model``."""
    out: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in list(model.modules()):
        children, i = list(parent.named_children()), 0
        while i < len(children):
            (name, child), triple = children[i], [m for _, m in children[i:i + 3]]
            if channels_last and isinstance(parent, nn.Sequential) and len(triple) == 3 and fused.fusable(*triple):
                out += [(parent, name, fused.FusedBNReLUPool(*triple)),
                        (parent, children[i + 1][0], nn.Identity()), (parent, children[i + 2][0], nn.Identity())]
                i += 3
                continue
            if channels_last and type(child) is nn.AdaptiveAvgPool2d and child.output_size in (1, (1, 1)):
                out.append((parent, name, pools.LayoutKeepingAvgPool()))
            elif not channels_last and type(child) is nn.MaxPool2d:
                out.append((parent, name, pools.NCHWMaxPool.like(child)))
            i += 1
    return out


@contextmanager
def swapped(model: nn.Module, channels_last: bool) -> Iterator[bool]:
    """The layout's faster layers in ``model``'s places while inside, its own put back on leaving.

    Yields whether it swapped anything. The swaps share the replaced layers' tensors, so the
    state_dict, the optimiser and checkpoints see the same parameters and buffers under the same names.
    """
    swaps = _swaps(model, channels_last)
    originals = [(parent, name, getattr(parent, name)) for parent, name, _ in swaps]
    try:
        for parent, name, module in swaps:
            module.train(getattr(parent, name).training)
            setattr(parent, name, module)
        yield bool(swaps)
    finally:
        for parent, name, module in reversed(originals):
            module.train(getattr(parent, name).training)  # a model.eval() meanwhile reached the swap, not it
            setattr(parent, name, module)


@contextmanager
def speed_path(model: nn.Module, inputs: torch.Tensor, device: torch.device, channels_last: bool,
               compile: bool = False) -> Iterator[bool]:
    """Train ``model`` on ``inputs`` (N, C, H, W) with the CPU speed path where :func:`choose` says it helps.

    Yields whether it swapped anything (:func:`swapped`). Off on other devices, for torch.compile
    (which traces the network's own layers) and for inputs that are not images; on a CPU, freed
    memory is kept for the next step either way.
    """
    if torch.device(device).type != "cpu":
        yield False
        return
    memory.keep_freed_memory()
    size = int(inputs.shape[-1]) if inputs.dim() == 4 else None
    if compile or not choose(channels_last, size, torch.get_num_threads()):
        yield False
        return
    with swapped(model, channels_last) as any_swapped:
        yield any_swapped
