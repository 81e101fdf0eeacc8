"""The training engine: one step function, one loop, for every method, on one process or many.

    history = pretrain(method, data.inputs, data.augment, epochs=50, batch_size=256, alpha=1.0)

:func:`train_step` is the single training step of the project: two augmented views of a raw
batch, optional InputMix, the method's loss (i-Mix when ``alpha`` is a number) under autocast,
backward, SGD, the learning-rate schedule, then ``method.after_step()`` (EMA, queue).
:func:`pretrain` is the loop around it: learning rate ``0.125 * batch_size / 256`` (paper),
linear warm-up then cosine, a checkpoint after every epoch, exact resume.

Under ``torchrun --nproc_per_node W`` the same call joins the process group, wraps the method in
DistributedDataParallel (SyncBatchNorm on by default, as the authors' ``--bn sync``), and each
rank takes its N = batch_size / W slice of the global batch; the methods gather positives/keys
across ranks (:mod:`imix_teach.distributed`). Every random draw comes from generators seeded by
(seed, epoch, rank), so a killed run, one process or many, resumes to the same weights.
"""
from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import _checks, _memory, distributed
from .checkpoint import Checkpoint, ResumeWarning, resume_from, training_state
from .config import pick_device
from .methods import ContrastiveMethod
from .mixing import inputmix as apply_inputmix
from .mixing import inputmix_pair
from .monitor import History, Log, NonFiniteLossError

__all__ = ["MAX_SEED", "Augment", "History", "NonFiniteLossError", "ResumeWarning", "StepOptions", "autocast_dtype",
           "lr_lambda", "pretrain", "train_step", "unwrap"]

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
    """How a step treats its batch: i-Mix's alpha and options, InputMix, precision, memory layout."""

    alpha: float | None = None  # None: the plain method; a number: i-Mix with Beta(alpha, alpha)
    mix_options: Mapping[str, Any] = field(default_factory=dict)  # imix(): per_sample, max_lam, mode
    inputmix: bool | str = False  # InputMix (Table 3): True/"per_view", or "both_views" (the authors' 2N)
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
    views = [augment(x, generator) for _ in range(getattr(unwrap(model), "views", 2))]
    if options.inputmix == "both_views":  # partners drawn from both views together, as the authors' code
        views = list(inputmix_pair(*views, generator=generator, check=False))
    elif options.inputmix:
        views = [apply_inputmix(v, generator=generator, check=False) for v in views]
    if options.channels_last:
        views = [v.contiguous(memory_format=torch.channels_last) for v in views]
    device_type = x.device.type
    with torch.autocast(device_type, dtype=options.amp_dtype or torch.float32, enabled=options.amp_dtype is not None):
        loss = model(*views, options.alpha, generator=generator, labels=labels, check=False, **options.mix_options)
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
    method: ContrastiveMethod, inputs: torch.Tensor, augment: Augment, *, epochs: int, batch_size: int = 256,
    alpha: float | None = None, mix_options: dict[str, Any] | None = None, inputmix: bool | str = False,
    labels: torch.Tensor | None = None, lr: float | None = None, momentum: float = 0.9, weight_decay: float = 1e-4,
    warmup_epochs: int | None = None, device: str | torch.device | None = None, amp: str | bool = "auto",
    channels_last: bool | str = "auto", compile: bool = False, sync_bn: bool = True,
    checkpoint: str | os.PathLike | None = None, resume: bool = True, seed: int = 0, log_every: int = 10,
    progress: bool = True, callback: Callable[[int, History], None] | None = None,
) -> History:
    """Pretrain ``method`` on ``inputs`` (N, ...) raw samples; returns the :class:`History`.

    augment(x, generator) -> one view of the batch x (called twice per step). alpha: i-Mix's
    Beta(alpha, alpha); None trains the plain method. mix_options: passed to :func:`~imix_teach.mixing.imix`
    (mode="cutmix", per_sample=True, max_lam=True). inputmix: InputMix (Table 3), True or "per_view"
    (partners from the same view) or "both_views" (from both, the authors' code). labels: for
    SupervisedNPair. batch_size: the global batch, split over torchrun's processes; lr None =
    0.125 * batch_size / 256. sync_bn: SyncBatchNorm when several processes train. channels_last:
    "auto" trains image batches (N, C, H, W) in the channels_last layout on CUDA and CPU (faster steps,
    the same sums in another order); False keeps NCHW. checkpoint: a
    file written atomically after every epoch (rank 0); with ``resume`` a run continues from it,
    applying (and saying) a changed lr, momentum, weight decay, epochs or warm-up, and refusing
    another run's checkpoint. callback(epoch, history) runs after each epoch's checkpoint. seed: an
    integer in [0, MAX_SEED]. Every argument, and the inputs' values (no NaN or inf), are checked
    before anything is built; a float64 batch trains as the model's float32.
    """
    settings = {k: v for k, v in locals().items() if k not in ("method", "inputs", "augment", "labels", "callback")}
    run = _setup(method, inputs, labels, settings)
    rank, local = run.ctx.rank, batch_size // run.ctx.world_size  # this rank's rows of every global batch
    try:
        for epoch in range(run.start_epoch, epochs):
            order, generator = _epoch_rng(seed, epoch, inputs.shape[0], run.ctx)
            for b in range(run.steps):
                # The global batch is the same on every rank; each takes its own slice of it.
                idx = order[b * batch_size + rank * local:b * batch_size + (rank + 1) * local]
                loss = train_step(run.model, run.data[idx], augment, run.optimizer, generator, run.options,
                                  labels=run.labels[idx] if run.labels is not None else None,
                                  scheduler=run.scheduler, scaler=run.scaler)
                run.log.step(loss, epoch, last=b == run.steps - 1)
            run.log.end_epoch(method, run.steps)  # checks loss and weights *before* saving them
            if run.ckpt is not None and run.ctx.is_main:
                run.ckpt.save(training_state(method, run.optimizer, run.scaler, epoch + 1, run.history, run.config))
            if callback is not None:
                callback(epoch, run.history)
    finally:
        run.log.close()
    return run.history


@dataclass
class _Run:
    """Everything :func:`pretrain`'s loop uses, built by :func:`_setup`."""

    ctx: distributed.Context
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
    config: dict[str, Any]


def _setup(method: ContrastiveMethod, inputs: torch.Tensor, labels: torch.Tensor | None, s: dict[str, Any]) -> _Run:
    """Checks, process group, device, DDP, optimiser, resume, schedule and logging, in that order."""
    _validate_data(method, inputs, labels)
    _validate(**{k: s[k] for k in ("epochs", "batch_size", "alpha", "lr", "log_every", "warmup_epochs", "inputmix",
                                   "seed", "momentum", "weight_decay")}, n=inputs.shape[0])
    ctx = distributed.setup(pick_device(s["device"]))
    _check_world(s["batch_size"], ctx.world_size)
    steps, epochs = inputs.shape[0] // s["batch_size"], s["epochs"]
    warmup = min(10, epochs // 10) if s["warmup_epochs"] is None else s["warmup_epochs"]
    base_lr = 0.125 * s["batch_size"] / 256 if s["lr"] is None else s["lr"]
    config = dict(method=method.name, n=inputs.shape[0], seed=s["seed"], alpha=s["alpha"], batch_size=s["batch_size"],
                  lr=base_lr, momentum=s["momentum"], weight_decay=s["weight_decay"], epochs=epochs,
                  warmup_epochs=warmup, world_size=ctx.world_size)
    model, optimizer, scaler, options = _prepare(method, inputs, ctx, base_lr=base_lr, **{k: s[k] for k in (
        "amp", "channels_last", "compile", "sync_bn", "alpha", "mix_options", "inputmix", "momentum", "weight_decay")})
    ckpt = Checkpoint(s["checkpoint"]) if s["checkpoint"] is not None else None
    history, start = resume_from(ckpt, s["resume"], method, optimizer, scaler, config, ctx)
    scheduler = _schedule(optimizer, base_lr, warmup * steps, epochs * steps, start * steps)
    log = Log(history, s["log_every"], scheduler, ckpt.path if ckpt else None, total=epochs * steps,
              initial=start * steps, show=s["progress"] and ctx.is_main,
              desc=f"{method.name}{' + i-Mix' if s['alpha'] is not None else ''}")
    model.train()
    return _Run(ctx, model, optimizer, scaler, scheduler, options, ckpt, history, log, start, steps,
                inputs.to(ctx.device), labels.to(ctx.device) if labels is not None else None, config)


def _validate_data(method: ContrastiveMethod, inputs: Any, labels: Any) -> None:
    """inputs: a batch (N, ...) with finite values; labels (N,) integer class ids, given when the method needs them.

    The one full read of the data, before anything trains: the training step itself checks no
    values (a GPU sync per step).
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


def _validate(*, n: int, epochs: int, batch_size: int, alpha: float | None, lr: float | None, log_every: int,
              warmup_epochs: int | None, inputmix: bool | str, seed: int, momentum: float, weight_decay: float) -> None:
    """Settings checked before anything is built: each error names the argument and the fix."""
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("log_every", log_every)):
        _checks.integer(name, value)
    if not 2 <= batch_size <= n:
        raise ValueError(f"batch_size must be in [2, {n}] (the number of samples), got {batch_size}")
    if alpha is not None and not (isinstance(alpha, (int, float)) and 0 < alpha < math.inf):
        raise ValueError(f"alpha must be a finite number > 0 (or None for no i-Mix), got {alpha!r}")
    if lr is not None and not (isinstance(lr, (int, float)) and 0 < lr < math.inf):
        raise ValueError(f"lr must be a finite number > 0 (or None for 0.125 * batch_size / 256), got {lr!r}")
    if warmup_epochs is not None and (isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int)
                                      or warmup_epochs < 0):
        raise ValueError(f"warmup_epochs must be an integer >= 0 (or None for min(10, epochs // 10)), got {warmup_epochs!r}")
    if inputmix not in (False, True, "per_view", "both_views"):
        raise ValueError(f"inputmix must be False, True, 'per_view' or 'both_views', got {inputmix!r}")
    _checks.integer("seed", seed, 0, MAX_SEED)
    _checks.number_in("momentum", momentum, 0, 1, high_open=True)
    _checks.number_in("weight_decay", weight_decay, 0, math.inf, high_open=True)


def _check_world(batch_size: int, world: int) -> None:
    if batch_size % world or batch_size // world < 2:
        raise ValueError(
            f"batch_size {batch_size} (the global batch) must split evenly over {world} processes with at "
            f"least 2 rows each; use a multiple of {world}"
        )


def _prepare(method: ContrastiveMethod, inputs: torch.Tensor, ctx: distributed.Context, *, amp, channels_last,
             compile: bool, sync_bn: bool, alpha, mix_options, inputmix: bool, momentum: float,
             weight_decay: float, base_lr: float):
    """Device, memory layout, compile, SyncBN + DDP, the optimiser and the fp16 scaler."""
    method.to(ctx.device)
    if ctx.device.type == "cpu":
        _memory.keep_freed_memory()
    # "auto": image batches (N, C, H, W) train channels_last on CUDA and on CPUs, where oneDNN's NHWC kernels
    # run the small ConvNet's step 1.15-1.25x faster (benchmarks/vs_lightly.py); the floats are summed in
    # another order, so numbers differ from the NCHW layout in the last bits (channels_last=False keeps it).
    use_cl = channels_last is True or (channels_last == "auto" and ctx.device.type in ("cuda", "cpu")
                                       and inputs.dim() == 4)
    if use_cl:
        method.to(memory_format=torch.channels_last)
    if compile:
        method.encoder.compile()
    model: nn.Module = method
    if ctx.world_size > 1:
        if sync_bn:  # BN statistics over the global batch, as one process would compute them
            distributed.convert_sync_batchnorm(method, ctx.device)
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        # Buffers (BN statistics, MoCo's queue) stay per rank: SyncBN and the gathered keys keep them equal.
        model = nn.parallel.DistributedDataParallel(method, device_ids=ids, **_NO_BUFFER_SYNC)
    dtype = autocast_dtype(amp, ctx.device)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=dtype == torch.float16)
    params = [p for p in method.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=base_lr, momentum=momentum, weight_decay=weight_decay)
    options = StepOptions(alpha, dict(mix_options or {}), inputmix, dtype, use_cl)
    return model, optimizer, scaler, options


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


_SEED_STRIDE, _RANK_STRIDE = 1_000_003, 2**40
# seed * _SEED_STRIDE + epoch + rank * _RANK_STRIDE must be a seed torch takes; 2**62 leaves room for
# any epoch count and up to 2**22 processes.
MAX_SEED = (_checks.SEED_MAX - 2**62) // _SEED_STRIDE


def _epoch_rng(seed: int, epoch: int, n: int, ctx: distributed.Context) -> tuple[torch.Tensor, torch.Generator]:
    """The epoch's data order (the same on every rank) and this rank's generator for views and mixing.

    Rank 0 continues the order's own generator, so a one-process run draws exactly as before.
    """
    shared = torch.Generator(device=ctx.device).manual_seed(seed * _SEED_STRIDE + epoch)
    order = torch.randperm(n, generator=shared, device=ctx.device)
    if ctx.rank == 0:
        return order, shared
    return order, torch.Generator(device=ctx.device).manual_seed(seed * _SEED_STRIDE + epoch + ctx.rank * _RANK_STRIDE)


