"""Running the grid: load each dataset once, pretrain + evaluate each run, save it at once."""
from __future__ import annotations

import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .. import experiment
from ..config import data_root, pick_device
from ..data import load
from ..data.tabular import COVTYPE_GROUPS
from ..models import build_encoder
from ..train import NonFiniteLossError
from .grid import RunSpec, plan
from .presets import DEFAULT_METHODS, DOMAINS, DatasetSpec, Preset, get_preset
from .report import write_outputs
from .store import ResultStore, check_writable, claimed, file_name

def encoder_for(spec: DatasetSpec, input_shape: tuple[int, ...]) -> torch.nn.Module:
    """The spec's encoder, ``(kind, size)``, for this data (the authors' CovType column groups)."""
    kind, size = spec.encoder
    groups = COVTYPE_GROUPS if kind == "mlp-authors" and spec.dataset == "covtype" else None
    return build_encoder(input_shape, kind, size, groups=groups)


class DataCache:
    """Loads each (root, dataset, options) once per reproduction (the last ``maxsize`` kept); applies ``test_limit``."""

    maxsize = 4

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = root
        self._cache: dict[str, Any] = {}

    def get(self, spec: DatasetSpec) -> tuple[Any, Any]:
        """(train, test) DomainData for a spec, loaded once; test cut to ``spec.test_limit`` rows."""
        key = json.dumps([str(data_root(self.root)), spec.dataset, spec.train_options, spec.test_options,
                          spec.test_limit], sort_keys=True, default=str)
        if key in self._cache:
            self._cache[key] = self._cache.pop(key)  # most recently used last
        else:
            while len(self._cache) >= self.maxsize:
                self._cache.pop(next(iter(self._cache)))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # e.g. small classes keeping all rows
                train = load(spec.dataset, "train", root=self.root, **spec.train_options)
                test = load(spec.dataset, "test", root=self.root, **spec.test_options)
            if spec.test_limit is not None and len(test) > spec.test_limit:
                idx = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[: spec.test_limit]
                test = test.subset(idx.sort().values)
            self._cache[key] = (train, test)
        return self._cache[key]


def execute(run: RunSpec, data: DataCache, *, checkpoint: Path | None = None, device: str | torch.device | None = None,
            step_progress: bool = False) -> dict[str, Any]:
    """Pretrain + evaluate one run; returns its JSON record."""
    spec = run.spec
    train, test = data.get(spec)
    torch.manual_seed(run.seed)  # same seed -> same initial weights with and without i-Mix
    encoder = encoder_for(spec, train.input_shape)
    resumed = checkpoint is not None and checkpoint.exists()
    tic = time.perf_counter()
    common = dict(
        key=run.key, preset=run.preset, domain=spec.domain, dataset=spec.dataset, method=run.method, imix=run.imix,
        alpha=run.alpha, seed=run.seed, config_hash=run.config_hash(), primary=spec.primary, n_train=len(train),
        n_test=len(test), epochs=spec.epochs, batch_size=min(spec.batch_size, len(train)),
        resumed_from_checkpoint=resumed, torch=torch.__version__, threads=torch.get_num_threads(),
        device=str(pick_device(device)),
    )
    try:
        result = experiment.run(
            run.method, train, test, alpha=run.alpha, epochs=spec.epochs, batch_size=spec.batch_size, seed=run.seed,
            tau=spec.tau, encoder=encoder, method_kwargs=spec.method_kwargs.get(run.method, {}), evaluate=spec.evaluate,
            probe_epochs=spec.probe_epochs, device=device, progress=step_progress, lr=spec.lr, weight_decay=spec.weight_decay,
            warmup_epochs=spec.warmup_epochs, mix_options=dict(run.mix_options) or None, amp=run.amp,
            channels_last=run.channels_last, compile=run.compile, checkpoint=checkpoint,
        )
    except NonFiniteLossError as err:  # recorded (and not retried): the table counts it, the grid goes on
        return dict(common, linear=None, knn=None, least_squares=None, train_accuracy=None, final_loss=None,
                    epoch_loss=[], pretrain_seconds=time.perf_counter() - tic, eval_seconds=0.0, error=str(err),
                    finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    total = time.perf_counter() - tic
    return dict(
        common, linear=result.linear, knn=result.knn, least_squares=result.least_squares,
        train_accuracy=result.train_accuracy, final_loss=(result.history.epoch_loss or [None])[-1],
        epoch_loss=result.history.epoch_loss, pretrain_seconds=result.pretrain_seconds,
        eval_seconds=total - result.pretrain_seconds,
        lam_sampling="one lam per sample, max(lam, 1-lam) (authors' code)"
        if dict(run.mix_options).get("per_sample") else "one lam ~ Beta(alpha, alpha) per batch (paper)",
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def reproduce(
    preset: Preset | str = "cpu",
    domains: Sequence[str] = DOMAINS,
    methods: Sequence[str] = DEFAULT_METHODS,
    seeds: int | Sequence[int] = 3,
    out: str | os.PathLike = "results/cpu",
    *,
    root: str | os.PathLike | None = None,
    device: str | None = None,
    max_runs: int | None = None,
    on_run_done: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = True,
    write: bool = True,
    step_progress: bool | None = None,
    datasets: Sequence[str] | None = None,
    **overrides: Any,
) -> list[dict[str, Any]]:
    """Run the grid (skipping runs already in ``<out>/runs.json``), then write table and figure.

    max_runs: stop after this many *new* runs (the rest on a later call). on_run_done(record):
    called after each run has been saved. step_progress: a per-step bar inside each run too
    (default: only for the paper preset, whose runs take hours). Returns the grid's records so far.
    """
    preset = get_preset(preset) if isinstance(preset, str) else preset
    runs = plan(preset, domains, methods, seeds, datasets=datasets, **overrides)
    step_progress = preset.name == "paper" if step_progress is None else step_progress
    out = Path(out)
    store = ResultStore(out / "runs.json")
    todo = [r for r in runs if r.key not in store]
    if todo or write:
        check_writable(out, store)  # fail now, not after the first hour of compute
    data = DataCache(root)
    bar = tqdm(total=len(runs), initial=len(runs) - len(todo), disable=not progress, desc=f"reproduce {preset.name}",
               unit="run")
    done = 0
    claims = claimed(todo, out / "checkpoints")
    try:
        for run in claims:
            store.refresh()
            if run.key in store:  # another process finished it while we waited
                bar.update(1)
                continue
            if max_runs is not None and done >= max_runs:
                break
            bar.set_postfix_str(f"{run.spec.dataset} {run.method}{' + i-Mix' if run.imix else ''} seed {run.seed}")
            ckpt = out / "checkpoints" / f"{file_name(run.key)}.pt"
            record = execute(run, data, checkpoint=ckpt, device=device, step_progress=progress and step_progress)
            store.add(record)
            ckpt.unlink(missing_ok=True)
            done += 1
            bar.update(1)
            if on_run_done is not None:
                on_run_done(record)
    finally:
        claims.close()  # releases the lock of a run left unfinished
        bar.close()
        records = _write_up(store, runs, out, preset, write, failing=sys.exc_info()[1])
    return records


def _write_up(store: ResultStore, runs: Sequence[RunSpec], out: Path, preset: Preset, write: bool,
              failing: BaseException | None) -> list[dict[str, Any]]:
    """The grid's records from every process; with ``write``, the table and figure from them.

    failing: the error that stopped the grid, if any; a failed write then only warns, so that
    error (say a full disk during a checkpoint) is the one the user sees.
    """
    with store.lock:  # one writer of the table at a time
        store.refresh()
        records = store.select(r.key for r in runs)
        if write and records:
            try:
                write_outputs(out, records, preset, runs)
            except OSError as err:
                if failing is None:
                    raise
                warnings.warn(f"the table was not updated either: {err}", stacklevel=3)
    return records
