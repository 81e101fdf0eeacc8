"""The training engine: one step function, one loop, for every method, on one process or many.

    history = pretrain(method, data.inputs, data.augment, optim=Optim(epochs=50, batch_size=256),
                       mixing=Mixing(alpha=1.0))

:func:`train_step` is the single training step of the project: two augmented views of a raw
batch, optional InputMix, the method's loss (i-Mix when ``mixing.alpha`` is a number) under
autocast, backward, SGD, the learning-rate schedule, then ``method.after_step()`` (EMA, queue).
:func:`pretrain` is the loop around it: learning rate ``0.125 * batch_size / 256`` (paper),
linear warm-up then cosine, a checkpoint after every epoch, exact resume. Its options come in the
groups of a :class:`~imix_teach.run_config.RunConfig` (``optim``, ``mixing``, ``runtime``,
``checkpoint``), so a run described once trains the same way from every entry point.

Under ``torchrun --nproc_per_node W`` the same call joins the process group (and leaves it again
if it created it), wraps the method in DistributedDataParallel (SyncBatchNorm on by default, as the
authors' ``--bn sync``), and each rank takes its N = batch_size / W slice of the global batch; the
methods gather positives/keys across ranks (:mod:`imix_teach.distributed`). Every random draw comes
from generators seeded by (seed, epoch, rank), so a killed run, one process or many, resumes to the
same weights.
"""
from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import _checks, accel, distributed
from .checkpoint import Checkpoint, ResumeWarning, resume_from, training_state
from .config import pick_device, torch_threads
from .methods import ContrastiveMethod
from .mixing import inputmix as apply_inputmix
from .mixing import inputmix_pair
from .monitor import History, Log, NonFiniteLossError
from .run_config import _RANK_STRIDE, _SEED_STRIDE, MAX_SEED, Checkpointing, Mixing, Optim, Runtime, check_seed

__all__ = ["MAX_SEED", "Augment", "Checkpointing", "History", "Mixing", "NonFiniteLossError", "Optim", "ResumeWarning",
           "Runtime", "StepOptions", "autocast_dtype", "lr_lambda", "pretrain", "train_step", "unwrap"]

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def lr_lambda(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the base lr at step s: linear warm-up to 1, then cosine decay to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def autocast_dtype(amp: str | bool | None, device: torch.device) -> torch.dtype | None:
    """'auto' -> bf16 (else fp16) on CUDA, nothing elsewhere; 'bf16'/'fp16' force it; 'off' disables."""
    if amp in (False, None, "off", "none"):
        return None
    if amp in ("auto", True):
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if amp not in dtypes:
        raise ValueError(f"amp must be 'auto', 'bf16', 'fp16' or 'off', got {amp!r}")
    return dtypes[amp]


@dataclass(frozen=True)
class StepOptions:
    """How a step treats its batch: the mixing (i-Mix, InputMix), precision and memory layout."""

    mixing: Mixing = Mixing()
    amp_dtype: torch.dtype | None = None  # autocast dtype, None = full precision
    channels_last: bool = False


def unwrap(model: nn.Module) -> nn.Module:
    """The method inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def train_step(
    model: nn.Module,
    x: torch.Tensor,
    augment: Augment,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    options: StepOptions = StepOptions(),
    *,
    labels: torch.Tensor | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> torch.Tensor:
    """One optimisation step on a raw batch ``x`` (N, ...); returns the loss, detached (no host sync).

    model: a method (``loss = model(view1, view2, alpha, ..., check=False)``), or its DDP wrapper; a
    method with ``views = 1`` (supervised MixUp) gets one view. augment(x, generator) draws one view.
    Values are not checked here (``isfinite(...).all()`` would sync a GPU every step): shapes and
    dtypes still are, :func:`pretrain` checks its inputs once, and its loop stops on a NaN loss.
    """
    mixing = options.mixing
    views = [augment(x, generator) for _ in range(getattr(unwrap(model), "views", 2))]
    if mixing.inputmix == "both_views":  # partners drawn from both views together, as the authors' code
        views = list(inputmix_pair(*views, generator=generator, check=False))
    elif mixing.inputmix:
        views = [apply_inputmix(v, generator=generator, check=False) for v in views]
    if options.channels_last:
        views = [v.contiguous(memory_format=torch.channels_last) for v in views]
    device_type = x.device.type
    with torch.autocast(device_type, dtype=options.amp_dtype or torch.float32, enabled=options.amp_dtype is not None):
        loss = model(*views, mixing.alpha, generator=generator, labels=labels, check=False, **mixing.imix_options)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None and scaler.is_enabled():  # fp16: scale the loss so small gradients survive
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    if scheduler is not None:
        scheduler.step()
    unwrap(model).after_step()
    return loss.detach()


def pretrain(
    method: ContrastiveMethod, inputs: torch.Tensor, augment: Augment, *, optim: Optim = Optim(),
    mixing: Mixing = Mixing(), runtime: Runtime = Runtime(), checkpoint: Checkpointing | str | os.PathLike | None = None,
    labels: torch.Tensor | None = None, seed: int = 0, callback: Callable[[int, History], None] | None = None,
) -> History:
    """Pretrain ``method`` on ``inputs`` (N, ...) raw samples; returns the :class:`History`.

    augment(x, generator) -> one view of the batch x (called twice per step). optim: epochs, the
    global batch (split over torchrun's processes), SGD and its schedule; mixing: i-Mix (``alpha``)
    and InputMix; runtime: device, precision, layout, threads, logging (the groups of a
    :class:`~imix_teach.run_config.RunConfig`). checkpoint: a :class:`Checkpointing` or a path, written
    atomically after every epoch (rank 0); with ``resume`` a run continues from it, applying (and
    saying) a changed lr, momentum, weight decay, epochs or warm-up, and refusing another run's
    checkpoint. labels: for SupervisedNPair and MixUpClassifier. seed: every draw of the loop (data
    order, views, mixing), an integer in [0, MAX_SEED]. callback(epoch, history) runs after each
    epoch's checkpoint. Every argument, and the inputs' values (no NaN or inf), are checked before
    anything is built; a float64 batch trains as the model's float32.
    """
    checkpoint = checkpoint if isinstance(checkpoint, Checkpointing) or checkpoint is None else Checkpointing(checkpoint)
    _validate(method, inputs, labels, optim, seed)
    with torch_threads(runtime.threads), distributed.session(pick_device(runtime.device)) as ctx:
        run = _setup(method, inputs, labels, ctx, optim, mixing, runtime, checkpoint, seed)
        local = optim.batch_size // ctx.world_size  # this rank's rows of every global batch
        # the CPU speed path (fused kernels, layout-keeping pools) where it measurably helps; off elsewhere
        with accel.speed_path(method, inputs, ctx.device, run.options.channels_last, runtime.compile):
            try:
                for epoch in range(run.start_epoch, optim.epochs):
                    order, generator = _epoch_rng(seed, epoch, inputs.shape[0], ctx)
                    for b in range(run.steps):
                        # The global batch is the same on every rank; each takes its own slice of it.
                        start = b * optim.batch_size + ctx.rank * local
                        idx = order[start:start + local]
                        loss = train_step(run.model, run.data[idx], augment, run.optimizer, generator, run.options,
                                          labels=run.labels[idx] if run.labels is not None else None,
                                          scheduler=run.scheduler, scaler=run.scaler)
                        run.log.step(loss, epoch, last=b == run.steps - 1)
                    run.log.end_epoch(method, run.steps)  # checks loss and weights *before* saving them
                    if run.ckpt is not None and ctx.is_main:
                        run.ckpt.save(training_state(method, run.optimizer, run.scaler, epoch + 1, run.history,
                                                     run.identity))
                    if callback is not None:
                        callback(epoch, run.history)
            finally:
                run.log.close()
    return run.history


@dataclass
class _Run:
    """Everything :func:`pretrain`'s loop uses, built by :func:`_setup`."""

    model: nn.Module  # the method, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    scheduler: torch.optim.lr_scheduler.LambdaLR
    options: StepOptions
    ckpt: Checkpoint | None
    history: History
    log: Log
    start_epoch: int
    steps: int  # full global batches per epoch
    data: torch.Tensor
    labels: torch.Tensor | None
    identity: dict[str, Any]  # what a checkpoint records of the run (checkpoint.resume_from compares it)


def _setup(method: ContrastiveMethod, inputs: torch.Tensor, labels: torch.Tensor | None, ctx: distributed.Context,
           optim: Optim, mixing: Mixing, runtime: Runtime, checkpoint: Checkpointing | None, seed: int) -> _Run:
    """Device, DDP, optimiser, resume, schedule and logging, in that order."""
    _check_world(optim.batch_size, ctx.world_size)
    steps = inputs.shape[0] // optim.batch_size
    identity = dict(method=method.name, n=inputs.shape[0], seed=seed, alpha=mixing.alpha, batch_size=optim.batch_size,
                    lr=optim.base_lr, momentum=optim.momentum, weight_decay=optim.weight_decay, epochs=optim.epochs,
                    warmup_epochs=optim.warmup(), world_size=ctx.world_size)
    model, optimizer, scaler, options = _prepare(method, inputs, ctx, optim, mixing, runtime)
    ckpt = Checkpoint(checkpoint.path) if checkpoint is not None and checkpoint.path is not None else None
    history, start = resume_from(ckpt, checkpoint is not None and checkpoint.resume, method, optimizer, scaler,
                                 identity, ctx)
    scheduler = _schedule(optimizer, optim.base_lr, optim.warmup() * steps, optim.epochs * steps, start * steps)
    log = Log(history, runtime.log_every, scheduler, ckpt.path if ckpt else None, total=optim.epochs * steps,
              initial=start * steps, show=runtime.progress and ctx.is_main,
              desc=f"{method.name}{' + i-Mix' if mixing.alpha is not None else ''}")
    model.train()
    return _Run(model, optimizer, scaler, scheduler, options, ckpt, history, log, start, steps, inputs.to(ctx.device),
                labels.to(ctx.device) if labels is not None else None, identity)


def _validate(method: ContrastiveMethod, inputs: Any, labels: Any, optim: Optim, seed: int) -> None:
    """What the groups cannot check alone, before anything is built: the data, its size, the seed.

    The one full read of the data before anything trains: the training step itself checks no
    values (a GPU sync per step). inputs: a batch (N, ...) with finite values; labels (N,)
    integer class ids, given when the method needs them.
    """
    if not torch.is_tensor(inputs):
        raise TypeError(f"inputs must be a torch.Tensor (N, ...), got {type(inputs).__name__}; use torch.as_tensor(...)")
    if inputs.dim() < 1 or inputs.shape[0] == 0:
        raise ValueError(f"inputs must be a batch (N, ...) of N >= 2 samples, got shape {tuple(inputs.shape)}")
    _checks.finite("inputs", inputs, hint="clean or drop those samples before pretraining")
    n = inputs.shape[0]
    if labels is not None:
        _checks.labels("labels", labels, n)
    elif getattr(method, "needs_labels", False):
        raise ValueError(f"labels must be given: {method.name} is supervised, pass a tensor of shape ({n},) "
                         "holding integer class ids")
    if optim.batch_size > n:
        raise ValueError(f"batch_size must be in [2, {n}] (the number of samples), got {optim.batch_size}")
    check_seed(seed)


def _check_world(batch_size: int, world: int) -> None:
    if batch_size % world or batch_size // world < 2:
        raise ValueError(
            f"batch_size {batch_size} (the global batch) must split evenly over {world} processes with at "
            f"least 2 rows each; use a multiple of {world}"
        )


def _prepare(method: ContrastiveMethod, inputs: torch.Tensor, ctx: distributed.Context, optim: Optim, mixing: Mixing,
             runtime: Runtime) -> tuple[nn.Module, torch.optim.Optimizer, torch.amp.GradScaler, StepOptions]:
    """Device, memory layout, compile, SyncBN + DDP, the optimiser and the fp16 scaler."""
    method.to(ctx.device)
    # "auto": image batches (N, C, H, W) train channels_last on CUDA and on CPUs, where oneDNN's NHWC kernels
    # run the small ConvNet's step 1.15-1.25x faster (benchmarks/vs_lightly.py); the floats are summed in
    # another order, so numbers differ from the NCHW layout in the last bits (channels_last=False keeps it).
    use_cl = runtime.channels_last is True or (runtime.channels_last == "auto" and ctx.device.type in ("cuda", "cpu")
                                               and inputs.dim() == 4)
    if use_cl:
        method.to(memory_format=torch.channels_last)
    if runtime.compile:
        method.encoder.compile()
    model: nn.Module = method
    if ctx.world_size > 1:
        if runtime.sync_bn:  # BN statistics over the global batch, as one process would compute them
            distributed.convert_sync_batchnorm(method, ctx.device)
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        # Buffers (BN statistics, MoCo's queue) stay per rank: SyncBN and the gathered keys keep them equal.
        model = nn.parallel.DistributedDataParallel(method, device_ids=ids, **_NO_BUFFER_SYNC)
    dtype = autocast_dtype(runtime.amp, ctx.device)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=dtype == torch.float16)
    params = [p for p in method.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=optim.base_lr, momentum=optim.momentum, weight_decay=optim.weight_decay,
                                nesterov=optim.nesterov)
    return model, optimizer, scaler, StepOptions(mixing, dtype, use_cl)


# torch 2.14 renamed broadcast_buffers; hosted runtimes with an older torch keep the old name.
_NO_BUFFER_SYNC = ({"forward_sync_buffers": False}
                   if "forward_sync_buffers" in inspect.signature(nn.parallel.DistributedDataParallel).parameters
                   else {"broadcast_buffers": False})


def _schedule(optimizer: torch.optim.Optimizer, base_lr: float, warmup_steps: int, total_steps: int,
              step: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Warm-up + cosine from ``base_lr``, positioned at ``step`` (the schedule is a pure function of it)."""
    for group in optimizer.param_groups:
        group["initial_lr"] = base_lr
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(warmup_steps, total_steps), last_epoch=step - 1)


def _epoch_rng(seed: int, epoch: int, n: int, ctx: distributed.Context) -> tuple[torch.Tensor, torch.Generator]:
    """The epoch's data order (the same on every rank) and this rank's generator for views and mixing.

    Rank 0 continues the order's own generator, so a one-process run draws exactly as before.
    """
    shared = torch.Generator(device=ctx.device).manual_seed(seed * _SEED_STRIDE + epoch)
    order = torch.randperm(n, generator=shared, device=ctx.device)
    if ctx.rank == 0:
        return order, shared
    return order, torch.Generator(device=ctx.device).manual_seed(seed * _SEED_STRIDE + epoch + ctx.rank * _RANK_STRIDE)
