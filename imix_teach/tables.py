"""Mean ± std over seeds and Markdown tables: the one copy the reproduction, analysis and notebooks share."""
from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0.0 for a single value)."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("values must not be empty")
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def format_mean_std(values: Sequence[float] | None, scale: float = 100.0, digits: int = 1) -> str:
    """``[0.701, 0.723, 0.712] -> '71.2 ± 1.1'`` (percent, sample std); one value -> '70.1'; none -> '–'."""
    vals = [v for v in (values or []) if v is not None and math.isfinite(v)]
    if not vals:
        return "–"
    m, s = mean_std([scale * v for v in vals])
    return f"{m:.{digits}f}" if len(vals) == 1 else f"{m:.{digits}f} ± {s:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table: ``markdown_table(["a", "b"], [[1, 2]])`` -> '| a | b |\\n|---|---|\\n| 1 | 2 |'."""
    if any(len(row) != len(header) for row in rows):
        raise ValueError(f"every row must have {len(header)} cells (the header's), got {[len(r) for r in rows]}")
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)


def ordered(items: Iterable[Any]) -> list[Any]:
    """The distinct items in first-seen order: ``ordered("abca") == ["a", "b", "c"]`` (a table's rows and columns)."""
    return list(dict.fromkeys(items))


def apart(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether the mean ± std bars of two samples do not overlap: ``|mean(a) - mean(b)| > std(a) + std(b)``
    (sample std). False when either has fewer than two values: one value has no spread to be beyond.

    This is what "beyond the spread" means everywhere in the course: ``apart([70, 71, 72], [74, 75, 76])``
    is True (bars 70-72 and 74-76), ``apart([70, 72, 74], [73, 74, 75])`` False (70-74 overlaps 73-75).
    """
    if len(a) < 2 or len(b) < 2:
        return False
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    return abs(ma - mb) > sa + sb
