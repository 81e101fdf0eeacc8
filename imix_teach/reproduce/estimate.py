"""A grid's time before it runs: seconds per step of each kind of run, times the steps each run takes.

Per kind of run (what shares a step time: dataset, method, variant), the seconds per step come
from the grid's finished records where there are some, else from a few steps timed here
(:func:`imix_teach.engine.time_steps`); the evaluation's seconds likewise, else a never-trained
encoder evaluated once. An estimate for this machine and its load, not a promise.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .. import engine
from ..config import pick_device
from .grid import Grid, GridRun
from .store import ResultStore


def estimate(grid: Grid, todo: Sequence[GridRun], store: ResultStore, cache: engine.DataCache, *, steps: int = 3,
             root: str | None = None) -> list[dict[str, Any]]:
    """One row per kind of run still to do: how many, seconds per step and per evaluation, the hours."""
    finished: dict[tuple, list[dict[str, Any]]] = {}
    for run in grid.runs:
        record = store.records.get(run.key)
        if record is not None and record.get("linear", record.get("least_squares")) is not None:
            finished.setdefault(run.kind, []).append(record)
    rows: dict[tuple, dict[str, Any]] = {}
    for run in todo:
        config = run.config.replace(root=root) if root is not None else run.config
        train, test = engine.load_data(config.data, cache)
        row = rows.get(run.kind)
        if row is None:
            row = rows[run.kind] = dict(kind=run.kind, runs=0, steps=0, **_seconds(config, train, test,
                                                                                    finished.get(run.kind), steps))
        row["runs"] += 1
        row["steps"] += config.optim.epochs * (len(train) // min(config.optim.batch_size, len(train)))
    for row in rows.values():
        row["hours"] = (row["steps"] * row["step_seconds"] + row["runs"] * row["eval_seconds"]) / 3600
        row["device"] = str(pick_device(grid.runs[0].config.runtime.device))
    return list(rows.values())


def _seconds(config, train, test, records: list[dict[str, Any]] | None, steps: int) -> dict[str, float]:
    """Seconds per step and per evaluation: the finished records' mean, else measured here."""
    if records:
        per_step = [r["pretrain_seconds"] / _steps(r) for r in records if _steps(r)]
        return dict(step_seconds=sum(per_step) / len(per_step),
                    eval_seconds=sum(r["eval_seconds"] for r in records) / len(records), measured="records")
    return dict(step_seconds=engine.time_steps(config, train, steps),
                eval_seconds=engine.floor(config, train, test).eval_seconds if config.evaluation.probes else 0.0,
                measured=f"{steps} steps here")


def _steps(record: dict[str, Any]) -> int:
    """The training steps a record's run took (older records lack ``steps``)."""
    return record.get("steps") or record["epochs"] * (record["n_train"] // record["batch_size"])


def total_hours(rows: Sequence[dict[str, Any]]) -> float:
    """The estimate's total, in hours."""
    return sum(r["hours"] for r in rows)


def estimate_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of :func:`estimate` as a Markdown table with the total."""
    lines = ["| run kind | runs | s/step | steps | s/evaluation | hours | from |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {' '.join(map(str, r['kind']))} | {r['runs']} | {r['step_seconds']:.3f} | {r['steps']:,} | "
                     f"{r['eval_seconds']:.1f} | {r['hours']:.2f} | {r['measured']} |")
    device = rows[0]["device"] if rows else "?"
    lines.append(f"\nEstimated total: {total_hours(rows):.1f} h on {device} with {torch.get_num_threads()} thread(s) "
                 "(pretraining and evaluation; an extrapolation from measured steps).")
    return "\n".join(lines)
