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
from pathlib import Path
from typing import Any

import torch

from .files import atomic_write

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
