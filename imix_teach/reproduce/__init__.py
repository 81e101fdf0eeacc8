"""Reproduce the paper's comparisons: every preset a grid of runs, every grid run by one runner.

    imix-teach reproduce --preset cpu --domain all --methods npair,moco,byol --seeds 3 --out results/cpu
    imix-teach reproduce --preset regime          # the paper's regime (little data, long training, no augmentation)

Presets: ``cpu`` (real offline data at CPU scale: a CIFAR-10 subset at 16 px, FSDD spoken digits,
CovType and HIGGS, small encoders, a few hundred steps per run; about 22 minutes on 2 CPU cores),
``paper`` (the paper's settings for one GPU: ResNet-50 with the CIFAR stem, projection
2048-2048-128, batch 256, tau 0.2, alpha 1, 4000 epochs on CIFAR; Speech Commands 500 epochs
tau 0.5; tabular 5-layer MLP, batch 512, 500 epochs, tau 0.1, alpha 2), ``paper-imagenet``, and the
fixed-protocol grids ``regime`` (:mod:`.regime`). ``--estimate-steps K`` times K steps per kind
of run and prints the expected total instead of training.

The protocol is the paper's: pretrain, freeze, then a linear probe (100 epochs, SGD) on the
features; for HIGGS the closed-form least-squares classifier; a weighted kNN as a second number.

Every finished run is written to ``<out>/runs.json`` at once (locked, merged, replaced atomically),
keyed by the run and a hash of everything that shapes it, so a killed reproduction continues where
it stopped and recomputes nothing; several processes may share one ``--out`` folder (each run is
claimed by a lock). The report is rewritten from ``runs.json`` at the end.

The package: :mod:`.grid` (a grid and its runs), :mod:`.presets` (cpu, paper, paper-imagenet),
:mod:`.regime` (the regime grid), :mod:`.store` (``runs.json``), :mod:`.runner` (the one runner),
:mod:`.estimate` (a grid's time before it runs), :mod:`.report` and :mod:`.regime_report` (tables
and figures).
"""
from __future__ import annotations

from ..tables import format_mean_std, mean_std
from .estimate import estimate, estimate_table
from .grid import Grid, GridRun, config_hash
from .presets import (DEFAULT_METHODS, DOMAINS, METHOD_CHOICES, PAPER_TABLE1, PRESETS, DatasetSpec, Preset,
                      cpu_preset, get_preset, imagenet_preset, override, paper_preset)
from .report import markdown_table, plot_results, summarize, write_outputs
from .runner import execute, reproduce
from .store import ResultStore

__all__ = [
    "DEFAULT_METHODS", "DOMAINS", "METHOD_CHOICES", "PAPER_TABLE1", "PRESETS", "DatasetSpec", "Preset", "Grid",
    "GridRun", "config_hash", "ResultStore", "cpu_preset", "paper_preset", "imagenet_preset", "get_preset",
    "override", "reproduce", "execute", "summarize", "format_mean_std", "mean_std", "markdown_table",
    "plot_results", "write_outputs", "estimate", "estimate_table",
]
