"""Argument checks shared by the public functions: each raises an error naming the argument.

Wrong types raise ``TypeError``, wrong values ``ValueError``. The type and shape checks read only
tensor metadata, so they cost nothing on any device. The value checks (``finite``,
``simplex_rows``) are cheap on CPU, but ``isfinite(...).all()`` forces a device sync on CUDA, so
the methods' hot path calls the losses and mixing with ``check=False`` after :func:`views`, and
relies on the training loop's finite-loss check.
"""
from __future__ import annotations

import numbers
from typing import Any

import torch

SEED_MAX = 2**64 - 1  # the largest seed torch.Generator.manual_seed takes


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not (isinstance(value, numbers.Real) or torch.is_tensor(value) and value.numel() == 1):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    return float(value)


def positive(name: str, value: float) -> None:
    if not (0 < _real(name, value) < float("inf")):  # also rejects NaN
        raise ValueError(f"{name} must be a finite number > 0, got {float(value)!r}")


def number_in(name: str, value: float, low: float, high: float, *, high_open: bool = False) -> float:
    """``value`` as a float in [low, high] (or [low, high) with ``high_open``); NaN is never in range."""
    number = _real(name, value)
    if not (low <= number <= high) or (high_open and number == high):
        raise ValueError(f"{name} must be a number in [{low:g}, {high:g}{')' if high_open else ']'}, got {number!r}")
    return number


def integer(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an int in [minimum, maximum]: TypeError for a non-integer (bool, 2.0, "8"), else ValueError."""
    allowed = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer {allowed}, got {type(value).__name__} {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    return int(value)


def flag(name: str, value: Any) -> None:
    """``value`` must be True or False: a string such as "no" would silently count as True."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")


def tensor(name: str, value: Any, *, floating: bool = False) -> None:
    """``value`` must be a torch.Tensor (of a floating-point dtype when ``floating``)."""
    if not torch.is_tensor(value):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}; convert it with torch.as_tensor")
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}; convert it with .float()")


def finite(name: str, value: torch.Tensor, hint: str = "check the inputs or lower the learning rate") -> None:
    """No NaN or inf in a floating ``value``; the error names the first bad entry. Reads values: a GPU sync."""
    tensor(name, value)
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        bad = ~torch.isfinite(value)
        first = tuple(torch.nonzero(bad)[0].tolist())
        raise ValueError(f"{name} contains NaN or inf values ({int(bad.sum())} of {value.numel()}, the first "
                         f"{float(value[first])} at index {first}); {hint}")


def ndim(name: str, value: torch.Tensor, expected: int) -> None:
    tensor(name, value)
    if value.dim() != expected:
        raise ValueError(f"{name} must be {expected}-D, got shape {tuple(value.shape)}")


def batch_size(name: str, n: int, minimum: int = 2) -> None:
    if n < minimum:
        raise ValueError(
            f"{name} has batch size {n}; contrast needs at least {minimum} instances per batch"
        )


def embeddings(name: str, value: torch.Tensor) -> None:
    """A floating-point (N, D) tensor with D >= 1. Metadata only."""
    tensor(name, value, floating=True)
    if value.dim() != 2 or value.shape[1] < 1:
        raise ValueError(f"{name} must be (N, D) embeddings with D >= 1, got shape {tuple(value.shape)}")


def views(view1: torch.Tensor, view2: torch.Tensor, minimum: int = 2) -> None:
    """The two views a method's ``forward`` gets: floating (N, ...) tensors of one shape, N >= ``minimum``.

    Row i of view2 is the second view of the instance in row i of view1, so any difference in
    shape is a bug (a MoCo step with 4 and 3 rows would silently pair a query with a queue entry).
    Metadata only: no device sync, fine on the hot path.
    """
    tensor("view1", view1, floating=True)
    tensor("view2", view2, floating=True)
    if view1.dim() < 2:
        raise ValueError(f"view1 must be a batch (N, ...) of samples, got shape {tuple(view1.shape)}")
    if view1.shape != view2.shape:
        raise ValueError(
            f"view1 and view2 must have the same shape (two views of the same N samples), got "
            f"{tuple(view1.shape)} and {tuple(view2.shape)}"
        )
    batch_size("view1", view1.shape[0], minimum)


def simplex_rows(name: str, targets: torch.Tensor, shape: tuple[int, int]) -> None:
    """Targets must be (N, C) with non-negative rows summing to 1."""
    tensor(name, targets, floating=True)
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


def labels(name: str, value: Any, n: int | None = None) -> None:
    """Class ids: an integer tensor of shape (N,) (``n`` rows when given). Metadata only.

    Float labels are refused rather than compared: NaN != NaN would leave a row with no positive.
    """
    shape = f"({n},)" if n is not None else "(N,)"
    expected = f"{name} must be a tensor of shape {shape} holding integer class ids (e.g. int64)"
    if not torch.is_tensor(value):
        raise TypeError(f"{expected}, got {type(value).__name__}; "
                        "convert it with torch.as_tensor(..., dtype=torch.long)")
    if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
        raise TypeError(f"{expected}, got dtype {value.dtype}; convert whole-number labels with .long()")
    if value.dim() != 1 or (n is not None and value.shape[0] != n):
        raise ValueError(f"{expected}, got shape {tuple(value.shape)}")


def class_ids(name: str, ids: torch.Tensor, num_classes: int) -> None:
    """(N,) integer class ids in [0, num_classes)."""
    tensor(name, ids)
    if ids.is_floating_point() or ids.dtype == torch.bool or ids.dim() != 1:
        raise ValueError(f"{name} as class ids must be an integer tensor of shape (N,), got {ids.dtype} "
                         f"{tuple(ids.shape)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if ids.numel() and bool(((ids < 0) | (ids >= num_classes)).any()):
        raise ValueError(f"{name} class ids must lie in [0, {num_classes}), got {int(ids.min())}..{int(ids.max())}")
