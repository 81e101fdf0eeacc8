"""Contrast across processes: one process per GPU (or several CPU processes), negatives from all.

Under ``torchrun`` each of W processes (ranks) holds N of the global batch's W*N pairs. Contrast
must still see the whole global batch, as in the one-process run, so every rank gathers the
positives (N-pair, SimCLR) or keys (MoCo) of all ranks; its own rows sit at columns
``rank*N ... rank*N + N - 1`` of the gathered matrix (:func:`local_targets`).

    positives = gather(embed(view2))              # (N, D) here -> (W*N, D), rank order
    targets = local_targets(None, n, device)      # (N, W*N): this rank's virtual labels, shifted

On one process (torch.distributed not initialised) every function here is the identity, so the
methods need no second code path.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def is_initialized() -> bool:
    """True inside an initialised process group (torchrun + :func:`setup`, or the user's own)."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of processes W (1 without a process group)."""
    return dist.get_world_size() if is_initialized() else 1


def rank() -> int:
    """This process's index in [0, W) (0 without a process group)."""
    return dist.get_rank() if is_initialized() else 0


class _Gather(torch.autograd.Function):
    """all_gather whose backward sums, over every rank, the gradient sent to this rank's rows.

    Why not ``torch.distributed.nn.functional.all_gather``: deprecated in the pinned torch 2.14,
    and the functional-collectives replacement is still a private module. Plain ``dist.all_gather``
    has no backward at all (SupContrast#26). This Function uses only the public, stable
    ``all_gather`` and ``all_reduce``, which gloo (CPU) and NCCL (GPU) both support; gloo has no
    ``reduce_scatter``, so backward all-reduces the full gradient and keeps this rank's slice.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        ctx.n = x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        # Each rank's loss sends gradient to every gathered row; row block r belongs to rank r.
        # Summing (not averaging, lightly#1528) makes DDP's later mean the full-batch gradient.
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.n
        return grad[start:start + ctx.n]


def gather(x: torch.Tensor) -> torch.Tensor:
    """(N, ...) on every rank -> (W*N, ...) concatenated in rank order, differentiable (SPEC §6).

    Backward: ``x`` receives the sum of the gradients that every rank's loss sends to its rows, so
    DDP's gradient averaging gives the full-batch gradient. Identity on one process. Every rank
    must pass the same shape.
    """
    if not is_initialized() or dist.get_world_size() == 1:
        return x
    return _Gather.apply(x)  # without gradients (keys, labels) it is a plain all_gather


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; its gradient is again the sum over ranks (every rank's loss uses the sum)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Differentiable sum of ``x`` over ranks; identity on one process."""
    return _AllReduceSum.apply(x) if world_size() > 1 else x


class SyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics cover the global batch of every process, on any device.

    torch's own ``nn.SyncBatchNorm`` runs on GPUs only; this one needs nothing but two
    all-reduces (gloo on CPU too): the global mean, then the global mean squared deviation, so the
    statistics equal those one process computes on the whole batch. Same parameters and buffers
    as ``nn.BatchNorm*d``, so checkpoints move between one process and many.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"SyncBatchNorm expects (N, C, ...) input, got shape {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, ...) -> normalised with statistics of the global batch (training, several processes)."""
        if not (self.training and world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        dims, shape = [0, *range(2, x.dim())], [1, -1] + [1] * (x.dim() - 2)
        count = x.numel() // x.shape[1] * world_size()
        mean = all_reduce_sum(x.sum(dims)) / count
        var = all_reduce_sum(((x - mean.view(shape)) ** 2).sum(dims)) / count  # biased, as BN normalises
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * count / max(count - 1, 1), alpha=m)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm in ``module`` -> a synchronised one (torch's on CUDA, :class:`SyncBatchNorm` elsewhere).

    Parameters and buffers are shared, not copied, so an optimiser built before still applies.
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, SyncBatchNorm):
        synced = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats)
        synced._parameters, synced._buffers = module._parameters, module._buffers
        synced.train(module.training)
        return synced
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, device))
    return module


def local_targets(targets: torch.Tensor | None, n: int, device: torch.device | str | None = None) -> torch.Tensor | None:
    """This rank's virtual labels over the gathered rows: (N, C) -> (N, W*C), shifted by rank*C.

    targets: (N, C) rows over this rank's own C candidates, None = eye(N) (C = N). Returns None on
    one process when ``targets`` is None (the losses' fast identity path).
    """
    w = world_size()
    if w == 1:
        return targets
    if targets is None:
        targets = torch.eye(n, device=device)
    c = targets.shape[1]
    return F.pad(targets, (rank() * c, (w - 1 - rank()) * c))


def all_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of a tensor over ranks (for logging the global loss); identity on one process."""
    if world_size() == 1:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / world_size()


@dataclass(frozen=True)
class Context:
    """Where this process stands: its rank, the world size, its device, and whether it is rank 0."""

    rank: int
    world_size: int
    device: torch.device
    started_here: bool = False  # setup() created the process group, so cleanup() may destroy it

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints and logs and evaluates."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True when torchrun (or another launcher) set WORLD_SIZE > 1 in the environment."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: torch.device, timeout_minutes: float = 10.0) -> Context:
    """Join the process group torchrun describes in the environment; one device per local rank.

    NCCL on CUDA, gloo on CPU. Without torchrun's variables (WORLD_SIZE <= 1) nothing is
    initialised and the context says rank 0 of 1. An already initialised group is used as is.
    ``timeout_minutes`` bounds a collective that waits on a dead rank, so a crash elsewhere ends
    this rank with an error instead of a hang (torchrun also stops the others on any failure).
    """
    if not is_initialized() and not launched_by_torchrun():
        return Context(0, 1, device)
    started = False
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(minutes=timeout_minutes))
        started = True
    return Context(dist.get_rank(), dist.get_world_size(), device, started)


def cleanup(ctx: Context) -> None:
    """Leave the process group if :func:`setup` created it."""
    if ctx.started_here and is_initialized():
        dist.destroy_process_group()


_current: Context | None = None  # the session this process is in, if any


@contextlib.contextmanager
def session(device: torch.device) -> Iterator[Context]:
    """Join the process group for the body (:func:`setup`), then leave it if this session created it.

    Whoever creates the process group destroys it. A session inside another one is the outer one
    (its context, whatever ``device`` says), so the group is set up once per process: the CLI's
    session holds it from pretraining through rank 0's writing of the results.
    """
    global _current
    if _current is not None:
        yield _current
        return
    ctx = _current = setup(device)
    try:
        yield ctx
    finally:
        _current = None
        cleanup(ctx)


def shared_permutation(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """randperm(n) drawn on rank 0 and broadcast, so every rank holds the same one."""
    device = generator.device if generator is not None else None
    order = torch.randperm(n, generator=generator, device=device)
    if world_size() > 1:
        dist.broadcast(order, src=0)
    return order
