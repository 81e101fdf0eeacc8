"""Exercise checkers: compare a student's answer with the library's and say what is wrong.

Checkers never raise on a wrong or unfinished answer (a notebook must run top to bottom); they
print a verdict and return True/False. Each notebook has a module here (``nb01.py`` ...) with
its checkers and its reference solutions (functions named ``solution_*``), printed by
:func:`show_solution` only when asked for, e.g. ``show_solution("nb01.solution_mixup")``.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch


def not_solved(name: str, hint: str = "") -> bool:
    """Say that an exercise still returns None and what to do about it; return False (the verdict)."""
    print(f"[ ] {name}: not solved yet (your function returns None). Write its body in place of `return None` "
          f"and run the cell again. {hint}".rstrip())
    return False


def compare(name: str, answer: Any, expected: torch.Tensor | float, *, atol: float = 1e-5, hint: str = "") -> bool:
    """Print whether ``answer`` equals ``expected`` (shape, then values); return True when it does."""
    if answer is None:
        return not_solved(name, hint)
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
            print(f"[x] {name}: raised {type(err).__name__}: {err} on case {k}. {kwargs.get('hint', '')}".rstrip())
            return False
        if not compare(f"{name} (case {k})", answer, reference(*case), **kwargs):
            return False
    print(f"[ok] {name}: all {len(cases)} cases pass.")
    return True


def _same(answer: Any, value: Any, atol: float) -> bool:
    try:
        got, want = torch.as_tensor(answer, dtype=torch.float32), torch.as_tensor(value, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        return False
    if got.shape != want.shape or not bool(torch.isfinite(got).all()):
        return False
    return got.numel() == 0 or float((got - want).abs().max()) <= atol


def diagnose(student: Callable, cases: list[tuple], mistakes: dict[str, Callable], *, atol: float = 1e-4) -> str | None:
    """The first common mistake (name -> wrong function) whose output equals the student's on every case."""
    for what, wrong in mistakes.items():
        try:
            if all(_same(student(*case), wrong(*case), atol) for case in cases):
                return what
        except Exception:  # the student's function or the wrong variant fails on a case: not this mistake
            continue
    return None


def check_with_hints(name: str, student: Callable, reference: Callable, cases: list[tuple],
                     mistakes: dict[str, Callable], *, atol: float = 1e-5, hint: str = "") -> bool:
    """:func:`check_function`, then, for a wrong answer, name the common mistake it matches (if any)."""
    ok = check_function(name, student, reference, cases, atol=atol, hint=hint)
    if not ok:
        what = diagnose(student, cases, mistakes, atol=max(atol, 1e-4))
        if what:
            print(f"    hint: your answer matches the common mistake where {what}.")
    return ok


def show_solution(name: str) -> None:
    """Print the source of a reference solution, e.g. ``show_solution("nb01.solution_mixup")``."""
    import importlib

    module_name, _, fn_name = name.partition(".")
    try:
        module = importlib.import_module(f"{__name__}.{module_name}")
    except ModuleNotFoundError:
        raise ValueError(f"no exercise module {module_name!r}: use 'nbXX.solution_name'") from None
    fn = getattr(module, fn_name, None)
    if fn is None:
        options = [n for n in dir(module) if n.startswith("solution_")]
        raise ValueError(f"no solution {fn_name!r} in {module_name}; available: {options}")
    print(inspect.getsource(fn))
