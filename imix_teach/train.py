"""One pretraining loop for every method, with or without i-Mix.

    history = pretrain(method, data.inputs, data.augment, epochs=50, batch_size=256, alpha=1.0)

Each step: take a batch of raw inputs (kept on the device), draw two augmented views, optionally
InputMix them, compute the method's loss (i-Mix when ``alpha`` is a number), step SGD, then
``method.after_step()``. Learning rate: ``0.125 * batch_size / 256`` (paper), linear warm-up then
cosine. Every random draw of an epoch comes from a generator seeded by (seed, epoch), so a run
that is interrupted and resumed from its checkpoint ends with the same weights (on CPU).
"""
from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import pick_device
from .methods import ContrastiveMethod
from .mixing import inputmix as apply_inputmix

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
    """The loss became NaN/inf; the last good checkpoint (if any) is left untouched."""


def lr_lambda(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the base lr at step s: linear warm-up to 1, then cosine decay to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def _autocast_dtype(amp: str | bool, device: torch.device) -> torch.dtype | None:
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


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_atomic(obj: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a half-written checkpoint


def pretrain(
    method: ContrastiveMethod,
    inputs: torch.Tensor,
    augment: Augment,
    *,
    epochs: int,
    batch_size: int = 256,
    alpha: float | None = None,
    mix_options: dict[str, Any] | None = None,
    inputmix: bool = False,
    labels: torch.Tensor | None = None,
    lr: float | None = None,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    warmup_epochs: int | None = None,
    device: str | torch.device | None = None,
    amp: str | bool = "auto",
    channels_last: bool | str = "auto",
    compile: bool = False,
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
    InputMix both views (no-augmentation setting, Table 3). labels: for SupervisedNPair.
    checkpoint: a file written atomically after every epoch; with ``resume`` a run continues
    from it. callback(epoch, history) runs after each epoch's checkpoint.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    n = inputs.shape[0]
    if not 2 <= batch_size <= n:
        raise ValueError(f"batch_size must be in [2, {n}] (the number of samples), got {batch_size}")
    if alpha is not None and not alpha > 0:
        raise ValueError(f"alpha must be > 0 (or None for no i-Mix), got {alpha}")
    if labels is not None and labels.shape[0] != n:
        raise ValueError(f"labels must have shape ({n},) to match inputs, got {tuple(labels.shape)}")
    device = pick_device(device)
    mix_options = dict(mix_options or {})
    steps_per_epoch = n // batch_size  # drop the last partial batch: contrast needs full batches
    total_steps = epochs * steps_per_epoch
    if warmup_epochs is None:
        warmup_epochs = min(10, epochs // 10)
    base_lr = 0.125 * batch_size / 256 if lr is None else lr

    method.to(device)
    use_channels_last = (channels_last is True) or (channels_last == "auto" and device.type == "cuda" and inputs.dim() == 4)
    if use_channels_last:
        method.to(memory_format=torch.channels_last)
    if compile:
        method.encoder.compile()
    autocast_dtype = _autocast_dtype(amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype == torch.float16)
    optimizer = torch.optim.SGD(
        [p for p in method.parameters() if p.requires_grad], lr=base_lr, momentum=momentum, weight_decay=weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(warmup_epochs * steps_per_epoch, total_steps))
    config = dict(method=method.name, epochs=epochs, batch_size=batch_size, alpha=alpha, seed=seed, n=n)

    history, start_epoch = History(), 0
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    if ckpt_path is not None and resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        if state["config"] != config:
            raise ValueError(
                f"checkpoint {ckpt_path} was made with {state['config']}, not {config}; "
                "pass the same settings, resume=False to start over, or another checkpoint path"
            )
        method.load_state_dict(state["method"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        history, start_epoch = History(**state["history"]), state["epoch"]

    data = inputs.to(device)
    labels_dev = labels.to(device) if labels is not None else None
    method.train()
    bar = tqdm(total=total_steps, initial=start_epoch * steps_per_epoch, disable=not progress, desc=f"{method.name}{' + i-Mix' if alpha else ''}")
    step = start_epoch * steps_per_epoch
    try:
        for epoch in range(start_epoch, epochs):
            tic = time.perf_counter()
            generator = torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch)
            order = torch.randperm(n, generator=generator, device=device)
            running = torch.zeros((), device=device)
            window = torch.zeros((), device=device)
            for b in range(steps_per_epoch):
                idx = order[b * batch_size:(b + 1) * batch_size]
                x = data[idx]
                view1, view2 = augment(x, generator), augment(x, generator)
                if inputmix:
                    view1, view2 = apply_inputmix(view1, generator=generator), apply_inputmix(view2, generator=generator)
                if use_channels_last:
                    view1 = view1.contiguous(memory_format=torch.channels_last)
                    view2 = view2.contiguous(memory_format=torch.channels_last)
                batch_labels = labels_dev[idx] if labels_dev is not None else None
                with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
                    loss = method(view1, view2, alpha, generator=generator, labels=batch_labels, **mix_options)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                method.after_step()
                step += 1
                running += loss.detach().float()
                window += loss.detach().float()
                if (b + 1) % log_every == 0 or b == steps_per_epoch - 1:
                    # One host sync per log interval keeps the GPU fed; it is also our NaN check.
                    mean = float(window) / ((b % log_every) + 1)
                    if not math.isfinite(mean):
                        raise NonFiniteLossError(
                            f"loss became {mean} at epoch {epoch}, step {step}; lower lr (now "
                            f"{scheduler.get_last_lr()[0]:.4g}) or alpha, or use amp='off'. "
                            + (f"The last good checkpoint is kept at {ckpt_path}." if ckpt_path else "")
                        )
                    history.step.append(step)
                    history.loss.append(mean)
                    history.lr.append(scheduler.get_last_lr()[0])
                    window.zero_()
                    bar.set_postfix(loss=f"{mean:.3f}", lr=f"{history.lr[-1]:.3g}", epoch=epoch + 1)
                bar.update(1)
            history.epoch_loss.append(float(running) / steps_per_epoch)
            history.epoch_seconds.append(time.perf_counter() - tic)
            if ckpt_path is not None:
                _save_atomic(
                    dict(
                        method=method.state_dict(), optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                        scaler=scaler.state_dict(), rng=_rng_state(), epoch=epoch + 1, history=history.as_dict(),
                        config=config,
                    ),
                    ckpt_path,
                )
            if callback is not None:
                callback(epoch, history)
    finally:
        bar.close()
    return history
