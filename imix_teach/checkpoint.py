"""Checkpoints you can trust: plain data only, written atomically, errors that name the file.

    ckpt = Checkpoint("runs/moco.pt")
    ckpt.check_writable()          # before any training: a read-only folder fails now, not after an epoch
    state = ckpt.load()            # None when there is no file yet
    ckpt.save(state)               # temp file in the same folder, fsync, then os.replace

A checkpoint holds only tensors and plain Python values (dicts, lists, numbers, strings), so it
loads with ``torch.load(weights_only=True)``: a crafted file cannot run code. Saving writes a
uniquely named temporary file created exclusively (``O_EXCL``) beside the target and renames it
over the target, so a crash, a full disk or a second writer never leaves a half-written file and
a planted symlink is never followed.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import distributed
from .files import atomic_write
from .monitor import History

_WAY_OUT = "pass resume=False to start over, or another checkpoint path"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or written; the message names the file and the way out."""


class Checkpoint:
    """One checkpoint file: ``load()`` -> dict or None, ``save(state)`` atomically."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if self.path.is_dir():
            raise CheckpointError(f"checkpoint {self.path} is a folder; give a file path such as {self.path / 'checkpoint.pt'}")

    def exists(self) -> bool:
        """True when the checkpoint file is there (a run to resume)."""
        return self.path.exists()

    def check_writable(self) -> None:
        """Create the folder and a scratch file in it now, so a read-only place fails before training."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, scratch = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".probe")
            os.close(fd)
            os.unlink(scratch)
        except OSError as err:
            raise CheckpointError(
                f"cannot write checkpoint {self.path}: {err.strerror or err}; choose a writable checkpoint path"
            ) from err

    def load(self, map_location: str | torch.device | None = "cpu") -> dict[str, Any] | None:
        """The saved state, or None when the file does not exist. Only tensors and plain types load."""
        if not self.path.exists():
            return None
        if self.path.stat().st_size == 0:
            raise CheckpointError(f"checkpoint {self.path} is empty (0 bytes); {_WAY_OUT}")
        try:
            state = torch.load(self.path, map_location=map_location, weights_only=True)
        except Exception as err:  # unpickling errors have many types; all mean the same to a user
            raise CheckpointError(
                f"checkpoint {self.path} cannot be read (truncated, corrupt, or not a plain-data "
                f"checkpoint: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); {_WAY_OUT}"
            ) from err
        if not isinstance(state, dict) or "epoch" not in state:
            raise CheckpointError(f"checkpoint {self.path} is not an imix-teach checkpoint; {_WAY_OUT}")
        return state

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` atomically; on failure the previous checkpoint is left as it was."""
        try:
            atomic_write(self.path, lambda fh: torch.save(state, fh))
        except OSError as err:
            raise CheckpointError(
                f"could not save checkpoint {self.path}: {err.strerror or err}; the previous checkpoint "
                "(if any) is intact; free disk space or choose another checkpoint path"
            ) from err


class ResumeWarning(UserWarning):
    """A run resumed with changed settings (lr, schedule, ...), which were applied from there on."""


def training_state(method: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, epoch: int,
           history: History, config: dict[str, Any]) -> dict[str, Any]:
    """Everything a resume needs, as tensors and plain Python values only (weights_only loading)."""
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return dict(method=method.state_dict(), optimizer=optimizer.state_dict(), scaler=scaler.state_dict(), rng=rng,
                epoch=epoch, history=history.as_dict(), config=dict(config))


_IDENTITY = ("method", "n", "seed", "alpha", "batch_size")  # a different run if any of these differ


def resume_from(ckpt: Checkpoint | None, resume: bool, method: nn.Module, optimizer: torch.optim.Optimizer,
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
                      f"here on: {said}", ResumeWarning, stacklevel=4)
    return History(**state["history"]), int(state["epoch"])
