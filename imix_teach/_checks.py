"""Argument checks shared by the public functions: each raises ``ValueError`` naming the argument.

They are cheap on CPU. ``isfinite(...).all()`` forces a device sync on CUDA, so the methods' hot
path calls the losses with ``check=False`` and relies on the training loop's finite-loss check.
"""
from __future__ import annotations

import torch


def positive(name: str, value: float) -> None:
    value = float(value)
    if not (0 < value < float("inf")):  # also rejects NaN
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def finite(name: str, tensor: torch.Tensor) -> None:
    if not torch.is_tensor(tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or inf values; check the inputs or lower the learning rate")


def ndim(name: str, tensor: torch.Tensor, expected: int) -> None:
    if tensor.dim() != expected:
        raise ValueError(f"{name} must be {expected}-D, got shape {tuple(tensor.shape)}")


def batch_size(name: str, n: int, minimum: int = 2) -> None:
    if n < minimum:
        raise ValueError(
            f"{name} has batch size {n}; contrast needs at least {minimum} instances per batch"
        )


def simplex_rows(name: str, targets: torch.Tensor, shape: tuple[int, int]) -> None:
    """Targets must be (N, C) with non-negative rows summing to 1."""
    finite(name, targets)
    if tuple(targets.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(targets.shape)}")
    if bool((targets < 0).any()):
        raise ValueError(f"{name} has negative entries; targets must be probability rows")
    sums = targets.sum(dim=1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
        bad = int((sums - 1).abs().argmax())
        raise ValueError(
            f"{name} rows must sum to 1 (row {bad} sums to {float(sums[bad]):.4f}); "
            "normalise each row, e.g. targets / targets.sum(1, keepdim=True)"
        )
