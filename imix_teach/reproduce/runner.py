"""The one grid runner: every preset's runs, each trained and evaluated by the engine and saved at once.

    grid = get_preset("cpu").grid(["tabular"], ["npair"], seeds=3)     # or regime.grid(), domains.grid()
    records = reproduce(grid, "results/cpu")                           # estimate, run what is left, report

A finished run is written to ``<out>/runs.json`` at once (locked, merged, replaced atomically), so a
stopped grid resumes where it stopped and recomputes nothing; two processes can share one folder
(each run is claimed by a lock). With ``grid.checkpoint_runs`` a run interrupted mid-way resumes
from its last epoch. The report is rewritten from ``runs.json`` at the end.
"""
from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .. import engine
from ..config import pick_device
from ..engine import DataCache
from ..files import write_json
from ..methods import method_settings
from ..monitor import NonFiniteLossError
from .estimate import estimate, total_hours
from .grid import Grid, GridRun
from .store import ResultStore, check_writable, claimed, file_name


def execute(run: GridRun, cache: DataCache, *, checkpoint: Path | None = None, root: str | None = None,
            device: str | None = None, step_progress: bool = False) -> dict[str, Any]:
    """Pretrain + evaluate one run; returns its JSON record (accuracies as fractions, as the probes give them)."""
    config = run.config.replace(progress=step_progress, path=checkpoint,
                                **({"root": root} if root is not None else {}),
                                **({"device": device} if device is not None else {}))
    train, test = engine.load_data(config.data, cache)
    batch = min(config.optim.batch_size, len(train))
    m = config.method
    common = dict(key=run.key, n_train=len(train), n_test=len(test), epochs=config.optim.epochs,
                  batch_size=batch, steps=config.optim.epochs * (len(train) // batch),
                  method_kwargs=method_settings(m.name, m.scale, len(train), **m.options),
                  resumed_from_checkpoint=checkpoint is not None and checkpoint.exists(), torch=torch.__version__,
                  threads=config.runtime.threads or torch.get_num_threads(),
                  device=str(pick_device(config.runtime.device)), config=config.replace(path=None).as_dict())
    common.update(run.labels)  # the grid's own fields (dataset, method, variant, seed, ...)
    if run.floor:  # a cell's reference point: the never-trained encoder, scored as the trained ones
        r = engine.floor(config, train, test)
        return dict(common, steps=0, linear=r.linear, knn=r.knn, least_squares=r.least_squares,
                    train_accuracy=r.train_accuracy, final_loss=None, loss_curve=[], pretrain_seconds=0.0,
                    eval_seconds=r.eval_seconds, finished=_now())
    try:
        r = engine.run(config, train, test)
    except NonFiniteLossError as err:  # recorded (and not retried): the report counts it, the grid goes on
        return dict(common, linear=None, knn=None, least_squares=None, train_accuracy=None, final_loss=None,
                    loss_curve=[], pretrain_seconds=0.0, eval_seconds=0.0, error=str(err), finished=_now())
    losses = r.history.epoch_loss
    every = max(1, len(losses) // 50)  # at most about 50 points of the loss curve
    return dict(common, linear=r.linear, knn=r.knn, least_squares=r.least_squares, train_accuracy=r.train_accuracy,
                final_loss=losses[-1], loss_curve=[[e + 1, round(v, 5)] for e, v in enumerate(losses)
                                                   if e % every == 0 or e == len(losses) - 1],
                pretrain_seconds=r.pretrain_seconds, eval_seconds=r.eval_seconds, finished=_now())


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def fix_protocol(out: Path, protocol: dict[str, Any]) -> None:
    """Write ``out/protocol.json`` if it is missing; refuse a folder whose protocol is another one."""
    path = out / "protocol.json"
    if path.exists():
        found = json.loads(path.read_text())
        if any(found.get(k) != protocol.get(k) for k in ("settings", "cells", "seeds")):
            raise ValueError(f"{path} holds another protocol than this version's {protocol['name']!r} grid: its runs "
                             "cannot be continued with these settings. Choose another --out for a new grid.")
        return
    write_json(path, protocol)


def reproduce(
    grid: Grid, out: str | Path, *, root: str | None = None, device: str | None = None, max_runs: int | None = None,
    on_run_done: Callable[[dict[str, Any]], None] | None = None, progress: bool = True, write: bool = True,
    say: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Run what is left of ``grid`` into ``out`` (saying the time estimate first), then write its report.

    max_runs: stop after this many *new* runs (the rest on a later call). on_run_done(record):
    called after each run has been saved. root/device: where the data is and what trains it (they
    do not change a run's key). Returns the grid's records so far, in the grid's order.
    """
    out = Path(out)
    store = ResultStore(out / "runs.json")
    todo = [r for r in grid.runs if r.key not in store]
    if todo or write:
        check_writable(out, store)  # fail now, not after the first hour of compute
    if grid.protocol is not None:
        fix_protocol(out, grid.protocol)
    cache = DataCache()
    if todo:
        hours = total_hours(estimate(grid, todo, store, cache, root=root))
        say(f"{grid.name} grid: {len(grid.runs)} runs, {len(grid.runs) - len(todo)} already in {out / 'runs.json'}, "
            f"{len(todo)} to go: about {hours:.1f} h on this machine with {torch.get_num_threads()} thread(s). "
            "Stop it at any time; the same command continues where it stopped.")
    bar = tqdm(total=len(grid.runs), initial=len(grid.runs) - len(todo), disable=not progress, desc=grid.name,
               unit="run")
    done, claims = 0, claimed(todo, out / "locks")
    try:
        for run in claims:
            store.refresh()
            if run.key in store:  # another process finished it while we waited
                bar.update(1)
                continue
            if max_runs is not None and done >= max_runs:
                break
            bar.set_postfix_str(" ".join(str(v) for v in run.kind) + f" seed {run.config.seed}")
            ckpt = out / "checkpoints" / f"{file_name(run.key)}.pt" if grid.checkpoint_runs else None
            record = execute(run, cache, checkpoint=ckpt, root=root, device=device,
                             step_progress=progress and grid.step_progress)
            store.add(record)
            if ckpt is not None:
                ckpt.unlink(missing_ok=True)
            done += 1
            bar.update(1)
            if on_run_done is not None:
                on_run_done(record)
    finally:
        claims.close()  # releases the lock of a run left unfinished
        bar.close()
        records = _write_up(store, grid, out, write, failing=sys.exc_info()[1])
    return records


def _write_up(store: ResultStore, grid: Grid, out: Path, write: bool,
              failing: BaseException | None) -> list[dict[str, Any]]:
    """The grid's records from every process; with ``write``, the report from them.

    failing: the error that stopped the grid, if any; a failed write then only warns, so that
    error (say a full disk during a checkpoint) is the one the user sees.
    """
    with store.lock:  # one writer of the report at a time
        store.refresh()
        records = store.select(r.key for r in grid.runs)
        if write and records:
            try:
                grid.report(out, records, grid)
            except OSError as err:
                if failing is None:
                    raise
                warnings.warn(f"the report was not updated either: {err}", stacklevel=3)
    return records

