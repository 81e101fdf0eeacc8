"""What a training run records and watches: the loss history, logging, and the non-finite stop."""
from __future__ import annotations

import math
import time
from pathlib import Path
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from . import distributed


@dataclass
class History:
    """What a run recorded: one row per logged step, and one value per epoch."""

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    epoch_loss: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, list]:
        """The history as plain lists (JSON, checkpoints)."""
        return asdict(self)


class NonFiniteLossError(FloatingPointError):
    """The loss (or the weights) became NaN/inf; the last good checkpoint is left untouched."""


class Log:
    """Loss bookkeeping: one host sync per ``log_every`` steps, which is also the NaN check."""

    def __init__(self, history: History, every: int, scheduler: torch.optim.lr_scheduler.LRScheduler,
                 kept: Path | None, *, total: int,
                 initial: int, show: bool, desc: str):
        self.history, self.every, self.scheduler, self.kept = history, every, scheduler, kept
        self.bar = tqdm(total=total, initial=initial, disable=not show, desc=desc)
        self.window, self.running, self.count, self.step_no = None, None, 0, initial
        self.tic = None

    def step(self, loss: torch.Tensor, epoch: int, last: bool) -> None:
        """Add a step's loss (no sync); every ``every`` steps and at the epoch's last, log and check it."""
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
        """Check the weights are finite (before any checkpoint), then record the epoch's loss and time."""
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
        kept = f" The last good checkpoint is kept at {self.kept}." if self.kept is not None else ""
        raise NonFiniteLossError(
            f"{what} became {value} at epoch {epoch}, step {self.step_no}; lower lr (now "
            f"{self.scheduler.get_last_lr()[0]:.4g}) or alpha, or use amp='off'.{kept} Resuming with a lower lr "
            "applies it from the last checkpoint."
        )

    def close(self) -> None:
        """Close the progress bar."""
        self.bar.close()
