"""Exercise checkers: compare a student's answer with the library's and say what is wrong.

Checkers never raise on a wrong or unfinished answer (a notebook must run top to bottom); they
print a verdict and return True/False. Solutions live in ``imix_teach.exercises.solutions`` and
are printed by :func:`show_solution`, out of the way until asked for.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch


def compare(name: str, answer: Any, expected: torch.Tensor | float, *, atol: float = 1e-5, hint: str = "") -> bool:
    """Print whether ``answer`` equals ``expected`` (shape, then values); return True when it does."""
    if answer is None:
        print(f"[ ] {name}: not done yet (the answer is None). {hint}".rstrip())
        return False
    try:
        got = torch.as_tensor(answer, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        print(f"[x] {name}: expected a tensor or number, got {type(answer).__name__}. {hint}".rstrip())
        return False
    want = torch.as_tensor(expected, dtype=torch.float32)
    if got.shape != want.shape:
        print(f"[x] {name}: shape {tuple(got.shape)}, expected {tuple(want.shape)}. {hint}".rstrip())
        return False
    if not bool(torch.isfinite(got).all()):
        print(f"[x] {name}: the answer contains NaN or inf. {hint}".rstrip())
        return False
    err = float((got - want).abs().max()) if got.numel() else 0.0
    if err > atol:
        print(f"[x] {name}: values differ from the library's by up to {err:.3g}. {hint}".rstrip())
        return False
    print(f"[ok] {name}: matches the library.")
    return True


def check_function(name: str, student: Callable, reference: Callable, cases: list[tuple], **kwargs: Any) -> bool:
    """Run ``student(*case)`` and ``reference(*case)`` on every case; stop at the first mismatch."""
    for k, case in enumerate(cases):
        try:
            answer = student(*case)
        except Exception as err:  # a student's bug is a verdict, not a crash
            print(f"[x] {name}: raised {type(err).__name__}: {err} on case {k}.")
            return False
        if not compare(f"{name} (case {k})", answer, reference(*case), **kwargs):
            return False
    print(f"[ok] {name}: all {len(cases)} cases pass.")
    return True


def show_solution(name: str) -> None:
    """Print the reference solution ``name`` from :mod:`imix_teach.exercises.solutions`."""
    from . import solutions

    fn = getattr(solutions, name, None)
    if fn is None:
        options = [n for n, f in vars(solutions).items() if inspect.isfunction(f) and not n.startswith("_")]
        raise ValueError(f"no solution named {name!r}; available: {sorted(options)}")
    print(inspect.getsource(fn))
