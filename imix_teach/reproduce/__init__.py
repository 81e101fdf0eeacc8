"""Reproduce the paper's main comparison: each method with and without i-Mix, per domain, over seeds.

    imix-teach reproduce --preset cpu --domain all --methods npair,moco,byol --seeds 3 --out results/cpu

Two presets (``PRESETS``):

- ``cpu``: real offline data at CPU scale (CIFAR-10 subset at 16 px, FSDD spoken digits,
  CovType and HIGGS), small encoders, a few hundred steps per run; the whole grid
  (4 datasets x 3 methods x {baseline, i-Mix} x 3 seeds) is sized for about 30 minutes on 2 CPU cores.
- ``paper``: the paper's settings (SPEC section 3: ResNet-50 with the CIFAR stem, projection
  2048-2048-128, batch 256, tau 0.2, alpha 1, 4000 epochs on CIFAR; Speech Commands 500 epochs
  tau 0.5; tabular 5-layer MLP, batch 512, 500 epochs, tau 0.1, alpha 2) for one GPU with AMP and
  channels_last. ``--estimate-steps K`` times K steps per run and prints the expected total
  (``benchmarks/README.md``: about 90-175 H100-hours for the full grid, an estimate).

The protocol is the paper's: pretrain, freeze, then a linear probe (100 epochs, SGD) on the
features; for HIGGS the closed-form least-squares classifier; a weighted kNN as a second number.

Every finished run is written to ``<out>/runs.json`` at once (locked, merged, replaced atomically),
keyed by preset/dataset/method/alpha/seed and a hash of everything that shapes the run, so a
killed reproduction continues where it stopped and recomputes nothing; a run interrupted
mid-way resumes from its last epoch checkpoint. The table (``results.md``, ``results.json``)
and figure (``results.png``) are rewritten from ``runs.json`` at the end.

Several processes may share one ``--out`` folder (say one per method, or two on the same grid
to use two GPUs): ``runs.json`` is locked and merged on every write, and each run is claimed by
a lock, so no record is lost and no run is computed twice.

The package: :mod:`.presets` (the settings), :mod:`.grid` (runs and their keys), :mod:`.store`
(``runs.json``), :mod:`.runner` (data, one run, the grid), :mod:`.report` (table and figure),
:mod:`.estimate` (time a preset before running it).
"""
from __future__ import annotations

from ..tables import format_mean_std, mean_std
from .estimate import estimate, estimate_table
from .grid import RunSpec, plan
from .presets import (DEFAULT_METHODS, DOMAINS, METHOD_CHOICES, PAPER_TABLE1, PRESETS, DatasetSpec, Preset,
                      cpu_preset, get_preset, imagenet_preset, override, paper_preset)
from .report import markdown_table, plot_results, summarize, write_outputs
from .runner import DataCache, encoder_for, execute, reproduce
from .store import ResultStore

__all__ = [
    "DEFAULT_METHODS", "DOMAINS", "METHOD_CHOICES", "PAPER_TABLE1", "PRESETS", "DatasetSpec", "Preset", "RunSpec",
    "ResultStore", "DataCache", "cpu_preset", "paper_preset", "imagenet_preset", "get_preset", "override", "plan",
    "reproduce", "execute", "encoder_for", "summarize", "format_mean_std", "mean_std", "markdown_table",
    "plot_results", "write_outputs", "estimate", "estimate_table",
]
