"""A grid: every run of a reproduction, each a :class:`~imix_teach.run_config.RunConfig` with a stable key.

Every preset of ``imix-teach reproduce`` (``cpu``, ``paper``, ``paper-imagenet``, ``regime``,
``domains``) is a :class:`Grid`: its runs, the fixed protocol they come from (if any), and the
function that writes its report. :func:`imix_teach.reproduce.runner.reproduce` is the one runner
that executes any of them, resumably.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..run_config import RunConfig


@dataclass(frozen=True)
class GridRun:
    """One run of a grid: its key in ``runs.json``, what to run, and the fields its record carries.

    labels: copied into the run's record (dataset, method, variant, seed, ...: what the report
    groups by). kind: the runs that share a step time (the time estimate measures one of each).
    floor: a cell's reference point instead of a training run.
    """

    key: str
    config: RunConfig
    labels: dict[str, Any]
    kind: tuple = ()
    floor: bool = False  # no training: the never-trained encoder's scores (:func:`imix_teach.engine.floor`)


@dataclass(frozen=True)
class Grid:
    """What the runner takes: the runs, their protocol, and the report written from their records.

    protocol: a fixed protocol, written to ``<out>/protocol.json`` before the first run; a folder
    holding another is refused, so a grid cannot drift between sittings. checkpoint_runs: a
    checkpoint after every epoch inside each run (long runs resume mid-way); False for grids of
    runs of a few minutes, where saving after each of hundreds of short epochs costs more than it saves.
    report(out, records, grid): writes the tables and figures from the records found so far.
    """

    name: str
    runs: tuple[GridRun, ...]
    report: Callable[[Path, Sequence[dict[str, Any]], Grid], Any]
    protocol: dict[str, Any] | None = None
    checkpoint_runs: bool = True
    step_progress: bool = False
    info: dict[str, Any] = field(default_factory=dict)  # what the report needs beyond the records


def config_hash(config: RunConfig) -> str:
    """10 hex digits naming everything that shapes a run's numbers (not its seed, paths or progress bars).

    A changed setting gives a new key, so a resumed grid never mixes runs of two settings. Fields
    left at None are not hashed, so a new optional field keeps the keys of the runs made before it.
    The CPU head settings are hashed as the library defines them (``cpu_overrides``), so changing
    them changes every key that uses them.
    """
    from ..methods import METHODS

    d = config.as_dict()
    d.pop("seed")
    d.pop("checkpoint")
    d["data"].pop("root")
    d["runtime"] = {k: d["runtime"][k] for k in ("amp", "channels_last", "compile")}
    if config.method.scale == "cpu" and config.method.name in METHODS:
        d["method"]["cpu_settings"] = dict(METHODS[config.method.name].cpu_overrides)
    d = {group: {k: v for k, v in fields.items() if v is not None} if isinstance(fields, dict) else fields
         for group, fields in d.items()}
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:10]


# A fixed-protocol grid's variants: (i-Mix on, InputMix on).
VARIANTS = {"baseline": (False, False), "imix": (True, False), "imix+inputmix": (True, True)}


def settings_hash(settings: dict[str, Any]) -> str:
    """10 hex digits naming a protocol's settings: a changed setting gives every run a new key."""
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


def cpu_settings_text() -> str:
    """The library's CPU head settings in words, for a protocol, from the values ``Method(scale="cpu")`` uses."""
    from ..methods import METHODS, MoCo

    heads, ema = METHODS["npair"].cpu_overrides, METHODS["moco"].cpu_overrides["momentum"]
    low, high = MoCo.cpu_queue
    return (f"the library's CPU settings, METHODS[m].settings('cpu', n_train): projection {heads['proj_hidden']}-"
            f"{heads['proj_dim']}; MoCo EMA {ema:g} and a queue of max({low}, min({high}, n_train // 2)) keys")
