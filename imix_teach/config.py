"""One place for the settings every notebook, example and test reads.

- ``IMIX_QUICK=1``: run the smallest honest configuration (same code paths, fewer steps/samples).
- ``IMIX_DATA``: the data root (else a per-user cache folder).
"""
from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")
_TRUE = {"1", "true", "yes", "on"}


def quick_mode() -> bool:
    """True when ``IMIX_QUICK`` is set to 1/true/yes/on (read at call time, so tests can set it)."""
    return os.environ.get("IMIX_QUICK", "").strip().lower() in _TRUE


def offline_mode() -> bool:
    """True when ``IMIX_OFFLINE`` is set to 1/true/yes/on: loaders never download, notebooks fall back."""
    return os.environ.get("IMIX_OFFLINE", "").strip().lower() in _TRUE


def full_or_quick(full: T, quick: T) -> T:
    """Return ``quick`` in quick mode, else ``full``: ``epochs = full_or_quick(30, 2)``."""
    return quick if quick_mode() else full


def cache_home() -> Path:
    """This user's cache folder: ``$XDG_CACHE_HOME/imix_teach``, else ``~/.cache/imix_teach``."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "imix_teach"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: the ``root`` argument, else ``$IMIX_DATA``, else :func:`cache_home`."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("IMIX_DATA")
    if env:
        return Path(env).expanduser()
    return cache_home()


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA, then Apple MPS, then CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU ``torch.Generator`` seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the body with ``threads`` torch CPU threads (None: leave them as they are), then restore them."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if threads is not None:
            torch.set_num_threads(before)
