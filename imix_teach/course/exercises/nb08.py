"""Notebook 08 (ablations): checkers and reference solutions.

Exercise: from the rows an ablation sweep returns (one dict per run: ``value``, ``variant``,
``seed`` and metrics such as ``knn``), compute the i-Mix gain at every swept value: mean over
seeds of i-Mix minus mean over seeds of the baseline, in percentage points.
:func:`check_gain_per_value` compares your function with the reference on made-up rows.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import torch

from . import compare, not_solved


def solution_gain_per_value(rows: list[dict], metric: str = "knn") -> dict:
    """{value: 100 * (mean_seeds i-Mix - mean_seeds baseline)} for every value that has both variants."""
    groups = defaultdict(list)
    for r in rows:
        groups[(r["value"], r["variant"])].append(r[metric])
    gains = {}
    for value in dict.fromkeys(r["value"] for r in rows):
        base, mixed = groups.get((value, "baseline")), groups.get((value, "i-Mix"))
        if base and mixed:
            gains[value] = 100 * (sum(mixed) / len(mixed) - sum(base) / len(base))
    return gains


def _rows() -> list[dict]:
    g = torch.Generator().manual_seed(10)
    rows = []
    for value in (0.1, 0.25, 0.5, 1.0):
        for variant in ("baseline", "i-Mix"):
            for seed in (0, 1, 2):
                knn = 0.4 + 0.2 * value + (0.05 * (1 - value) if variant == "i-Mix" else 0.0)
                knn += 0.02 * float(torch.randn((), generator=g))
                rows.append({"value": value, "variant": variant, "seed": seed, "knn": knn, "linear": knn + 0.1})
    rows.append({"value": 2.0, "variant": "i-Mix", "seed": 0, "knn": 0.9, "linear": 0.9})  # no baseline: no gain
    return rows


def check_gain_per_value(student: Callable[..., dict], metric: str = "knn") -> bool:
    """``student(rows, metric) -> {value: gain}``: same keys and values (percentage points) as the reference."""
    rows = _rows()
    name = "gain_per_value"
    try:
        answer = student(rows, metric)
    except Exception as err:  # a student's bug is a verdict, not a crash
        print(f"[x] {name}: raised {type(err).__name__}: {err}")
        return False
    if answer is None:
        return not_solved(name)
    expected = solution_gain_per_value(rows, metric)
    if not isinstance(answer, dict) or set(answer) != set(expected):
        keys = sorted(answer) if isinstance(answer, dict) else type(answer).__name__
        print(f"[x] {name}: expected a dict with keys {sorted(expected)} (values with both variants), got {keys}.")
        return False
    return compare(name, [answer[k] for k in expected], list(expected.values()), atol=1e-4,
                   hint="Average over seeds first, subtract baseline from i-Mix, times 100.")
