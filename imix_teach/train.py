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
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from . import distributed
from .checkpoint import Checkpoint
from .config import pick_device
from .methods import ContrastiveMethod
from .mixing import inputmix as apply_inputmix
from .mixing import inputmix_pair

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass
class History:
    """What a run recorded: one row per logged step, and one value per epoch."""

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    epoch_loss: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, list]:
        return asdict(self)


class NonFiniteLossError(FloatingPointError):
    """The loss (or the weights) became NaN/inf; the last good checkpoint is left untouched."""


class ResumeWarning(UserWarning):
    """A run resumed with changed settings (lr, schedule, ...), which were applied from there on."""


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

    model: a method (``loss = model(view1, view2, alpha, ...)``), or its DDP wrapper; a method
    with ``views = 1`` (supervised MixUp) gets one view. augment(x, generator) draws one view.
    """
    views = [augment(x, generator) for _ in range(getattr(unwrap(model), "views", 2))]
    if options.inputmix == "both_views":  # partners drawn from both views together, as the authors' code
        views = list(inputmix_pair(*views, generator=generator))
    elif options.inputmix:
        views = [apply_inputmix(v, generator=generator) for v in views]
    if options.channels_last:
        views = [v.contiguous(memory_format=torch.channels_last) for v in views]
    device_type = x.device.type
    with torch.autocast(device_type, dtype=options.amp_dtype or torch.float32, enabled=options.amp_dtype is not None):
        loss = model(*views, options.alpha, generator=generator, labels=labels, **options.mix_options)
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
    method: ContrastiveMethod,
    inputs: torch.Tensor,
    augment: Augment,
    *,
    epochs: int,
    batch_size: int = 256,
    alpha: float | None = None,
    mix_options: dict[str, Any] | None = None,
    inputmix: bool | str = False,
    labels: torch.Tensor | None = None,
    lr: float | None = None,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    warmup_epochs: int | None = None,
    device: str | torch.device | None = None,
    amp: str | bool = "auto",
    channels_last: bool | str = "auto",
    compile: bool = False,
    sync_bn: bool = True,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = True,
    seed: int = 0,
    log_every: int = 10,
    progress: bool = True,
    callback: Callable[[int, History], None] | None = None,
) -> History:
    """Pretrain ``method`` on ``inputs`` (N, ...) raw samples; returns the :class:`History`.

    augment(x, generator) -> one view of the batch x (called twice per step). alpha: i-Mix's
    Beta(alpha, alpha); None trains the plain method. mix_options: passed to
    :func:`imix_teach.mixing.imix` (mode="cutmix", per_sample=True, max_lam=True). inputmix:
    InputMix for the no-augmentation setting (Table 3): True or "per_view" mixes each view with
    partners from itself, "both_views" draws partners from both views (the authors' code).
    labels: for SupervisedNPair.
    batch_size: the global batch (split over torchrun's processes); lr None = 0.125 * batch / 256.
    sync_bn: SyncBatchNorm when several processes train. checkpoint: a file written atomically
    after every epoch (rank 0); with ``resume`` a run continues from it, applying (and saying)
    changed lr, momentum, weight decay, epochs or warm-up, refusing changed data, seed, method,
    alpha or batch size. callback(epoch, history) runs after each epoch's checkpoint.
    """
    _validate(inputs, labels, epochs=epochs, batch_size=batch_size, alpha=alpha, lr=lr, log_every=log_every,
              warmup_epochs=warmup_epochs)
    if inputmix not in (False, True, "per_view", "both_views"):
        raise ValueError(f"inputmix must be False, True, 'per_view' or 'both_views', got {inputmix!r}")
    ctx = distributed.setup(pick_device(device))
    n, steps_per_epoch = inputs.shape[0], inputs.shape[0] // batch_size  # full batches only
    _check_world(batch_size, ctx.world_size)
    warmup_epochs = min(10, epochs // 10) if warmup_epochs is None else warmup_epochs
    base_lr = 0.125 * batch_size / 256 if lr is None else lr
    config = dict(method=method.name, n=n, seed=seed, alpha=alpha, batch_size=batch_size,  # must match to resume
                  lr=base_lr, momentum=momentum, weight_decay=weight_decay, epochs=epochs,
                  warmup_epochs=warmup_epochs, world_size=ctx.world_size)
    model, optimizer, scaler, options = _prepare(method, inputs, ctx, amp=amp, channels_last=channels_last,
                                                 compile=compile, sync_bn=sync_bn, alpha=alpha, mix_options=mix_options,
                                                 inputmix=inputmix, momentum=momentum, weight_decay=weight_decay,
                                                 base_lr=base_lr)
    ckpt = Checkpoint(checkpoint) if checkpoint is not None else None
    history, start_epoch = _resume(ckpt, resume, method, optimizer, scaler, config, ctx)
    scheduler = _schedule(optimizer, base_lr, warmup_epochs * steps_per_epoch, epochs * steps_per_epoch,
                          start_epoch * steps_per_epoch)
    data = inputs.to(ctx.device)
    labels = labels.to(ctx.device) if labels is not None else None
    local = batch_size // ctx.world_size  # this rank's rows of every global batch
    log = _Log(history, log_every, scheduler, ckpt, total=epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch,
               show=progress and ctx.is_main, desc=f"{method.name}{' + i-Mix' if alpha is not None else ''}")
    model.train()
    try:
        for epoch in range(start_epoch, epochs):
            order, generator = _epoch_rng(seed, epoch, n, ctx)
            for b in range(steps_per_epoch):
                # The global batch is the same on every rank; each takes its own slice of it.
                idx = order[b * batch_size + ctx.rank * local:b * batch_size + (ctx.rank + 1) * local]
                loss = train_step(model, data[idx], augment, optimizer, generator, options,
                                  labels=labels[idx] if labels is not None else None, scheduler=scheduler, scaler=scaler)
                log.step(loss, epoch, last=b == steps_per_epoch - 1)
            log.end_epoch(method, steps_per_epoch)  # checks loss and weights *before* saving them
            if ckpt is not None and ctx.is_main:
                ckpt.save(_state(method, optimizer, scaler, epoch + 1, history, config))
            if callback is not None:
                callback(epoch, history)
    finally:
        log.close()
    return history


def _validate(inputs: Any, labels: Any, *, epochs: int, batch_size: int, alpha: float | None, lr: float | None,
              log_every: int, warmup_epochs: int | None) -> None:
    """Arguments checked before anything is built: each error names the argument and the fix."""
    if not torch.is_tensor(inputs):
        raise TypeError(f"inputs must be a torch.Tensor (N, ...), got {type(inputs).__name__}; use torch.as_tensor(...)")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("log_every", log_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    n = inputs.shape[0] if inputs.dim() else 0
    if not 2 <= batch_size <= n:
        raise ValueError(f"batch_size must be in [2, {n}] (the number of samples), got {batch_size}")
    if alpha is not None and not (isinstance(alpha, (int, float)) and 0 < alpha < math.inf):
        raise ValueError(f"alpha must be a finite number > 0 (or None for no i-Mix), got {alpha!r}")
    if lr is not None and not (isinstance(lr, (int, float)) and 0 < lr < math.inf):
        raise ValueError(f"lr must be a finite number > 0 (or None for 0.125 * batch_size / 256), got {lr!r}")
    if warmup_epochs is not None and (isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int)
                                      or warmup_epochs < 0):
        raise ValueError(f"warmup_epochs must be an integer >= 0 (or None for min(10, epochs // 10)), got {warmup_epochs!r}")
    if labels is not None and (not torch.is_tensor(labels) or tuple(labels.shape) != (n,)):
        shape = tuple(labels.shape) if torch.is_tensor(labels) else type(labels).__name__
        raise ValueError(f"labels must be a tensor of shape ({n},) to match inputs, got {shape}")


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
    use_cl = channels_last is True or (channels_last == "auto" and ctx.device.type == "cuda" and inputs.dim() == 4)
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


def _epoch_rng(seed: int, epoch: int, n: int, ctx: distributed.Context) -> tuple[torch.Tensor, torch.Generator]:
    """The epoch's data order (the same on every rank) and this rank's generator for views and mixing.

    Rank 0 continues the order's own generator, so a one-process run draws exactly as before.
    """
    shared = torch.Generator(device=ctx.device).manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=shared, device=ctx.device)
    if ctx.rank == 0:
        return order, shared
    return order, torch.Generator(device=ctx.device).manual_seed(seed * 1_000_003 + epoch + ctx.rank * 2**40)


def _state(method: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, epoch: int,
           history: History, config: dict[str, Any]) -> dict[str, Any]:
    """Everything a resume needs, as tensors and plain Python values only (weights_only loading)."""
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return dict(method=method.state_dict(), optimizer=optimizer.state_dict(), scaler=scaler.state_dict(), rng=rng,
                epoch=epoch, history=history.as_dict(), config=dict(config))


_IDENTITY = ("method", "n", "seed", "alpha", "batch_size")  # a different run if any of these differ


def _resume(ckpt: Checkpoint | None, resume: bool, method: nn.Module, optimizer: torch.optim.Optimizer,
            scaler: torch.amp.GradScaler, config: dict[str, Any], ctx: distributed.Context) -> tuple[History, int]:
    """Load the checkpoint (if any and ``resume``); refuse another run's, apply and say changed settings."""
    if ckpt is None:
        return History(), 0
    if ctx.is_main:
        ckpt.check_writable()  # a read-only folder fails now, not after the first epoch
    state = ckpt.load(map_location=ctx.device) if resume else None
    if state is None:
        return History(), 0
    saved = state["config"]
    clash = {k: (saved.get(k), config[k]) for k in _IDENTITY if saved.get(k) != config[k]}
    if clash:
        said = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in clash.items())
        raise ValueError(f"checkpoint {ckpt.path} belongs to another run ({said}); pass the same settings, "
                         "resume=False to start over, or another checkpoint path")
    method.load_state_dict(state["method"])
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"]["torch"].cpu())
    for group in optimizer.param_groups:  # today's settings win over the saved ones...
        group.update(momentum=config["momentum"], weight_decay=config["weight_decay"])
    changed = {k: (saved.get(k), v) for k, v in config.items() if k not in _IDENTITY and saved.get(k) != v}
    if changed and ctx.is_main:  # ...and the user is told
        said = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
        warnings.warn(f"resuming {ckpt.path} at epoch {state['epoch']} with changed settings, applied from "
                      f"here on: {said}", ResumeWarning, stacklevel=3)
    return History(**state["history"]), int(state["epoch"])


class _Log:
    """Loss bookkeeping: one host sync per ``log_every`` steps, which is also the NaN check."""

    def __init__(self, history: History, every: int, scheduler, ckpt: Checkpoint | None, *, total: int,
                 initial: int, show: bool, desc: str):
        self.history, self.every, self.scheduler, self.ckpt = history, every, scheduler, ckpt
        self.bar = tqdm(total=total, initial=initial, disable=not show, desc=desc)
        self.window, self.running, self.count, self.step_no = None, None, 0, initial
        self.tic = None

    def step(self, loss: torch.Tensor, epoch: int, last: bool) -> None:
        if self.running is None:
            self.running, self.window, self.tic = torch.zeros_like(loss), torch.zeros_like(loss), time.perf_counter()
        self.running += loss.float()
        self.window += loss.float()
        self.count += 1
        self.step_no += 1
        if self.count % self.every == 0 or last:
            mean = float(distributed.all_mean(self.window)) / ((self.count - 1) % self.every + 1)
            self._check(mean, epoch)
            self.history.step.append(self.step_no)
            self.history.loss.append(mean)
            self.history.lr.append(self.scheduler.get_last_lr()[0])
            self.window.zero_()
            self.bar.set_postfix(loss=f"{mean:.3f}", lr=f"{self.history.lr[-1]:.3g}", epoch=epoch + 1)
        self.bar.update(1)

    def end_epoch(self, method: nn.Module, steps: int) -> None:
        # The last step's update is not yet seen by any loss: check the weights themselves.
        size = torch.stack([p.detach().float().abs().sum() for p in method.parameters()]).sum()
        if not math.isfinite(float(size)):
            self._check(float("nan"), len(self.history.epoch_loss), what="the weights")
        self.history.epoch_loss.append(float(distributed.all_mean(self.running)) / steps)
        self.history.epoch_seconds.append(time.perf_counter() - self.tic)
        self.running, self.count = None, 0

    def _check(self, value: float, epoch: int, what: str = "the loss") -> None:
        if math.isfinite(value):
            return
        kept = f" The last good checkpoint is kept at {self.ckpt.path}." if self.ckpt is not None else ""
        raise NonFiniteLossError(
            f"{what} became {value} at epoch {epoch}, step {self.step_no}; lower lr (now "
            f"{self.scheduler.get_last_lr()[0]:.4g}) or alpha, or use amp='off'.{kept} Resuming with a lower lr "
            "applies it from the last checkpoint."
        )

    def close(self) -> None:
        self.bar.close()
