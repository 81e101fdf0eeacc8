"""Time a preset before running it: a few measured steps per run, extrapolated to the grid."""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from ..config import pick_device
from ..methods import build_method
from ..train import pretrain
from .grid import plan
from .presets import DEFAULT_METHODS, DOMAINS, Preset, get_preset
from .runner import DataCache, encoder_for

def estimate(preset: Preset | str, domains: Sequence[str] = DOMAINS, methods: Sequence[str] = DEFAULT_METHODS,
             seeds: int = 3, *, steps: int = 5, root: str | os.PathLike | None = None,
             device: str | torch.device | None = None, datasets: Sequence[str] | None = None,
             **overrides: Any) -> list[dict[str, Any]]:
    """Time ``steps`` training steps of each (dataset, method, i-Mix on/off) and extrapolate to the grid.

    An estimate: pretraining steps only (evaluation not counted), measured after one warm-up
    epoch on the current device, times the number of steps the preset's epochs need.
    """
    preset = get_preset(preset) if isinstance(preset, str) else preset
    rows = []
    data = DataCache(root)
    seen = set()
    for run in plan(preset, domains, methods, [0], datasets=datasets, **overrides):
        spec = run.spec
        if (spec.dataset, run.method, run.imix) in seen:
            continue
        seen.add((spec.dataset, run.method, run.imix))
        train, _ = data.get(spec)
        bs = min(spec.batch_size, len(train))
        idx = torch.arange(min(len(train), bs * steps))
        torch.manual_seed(0)
        model = build_method(run.method, encoder_for(spec, train.input_shape), tau=spec.tau,
                             **spec.method_kwargs.get(run.method, {}))
        hist = pretrain(model, train.inputs[idx], train.augment, epochs=2, batch_size=bs, alpha=run.alpha,
                        device=device, amp=run.amp, channels_last=run.channels_last, compile=run.compile,
                        progress=False, mix_options=dict(run.mix_options) or None)
        step_s = hist.epoch_seconds[1] / max(1, len(idx) // bs)
        total_steps = spec.epochs * (len(train) // bs)
        rows.append(dict(dataset=spec.dataset, method=run.method, imix=run.imix, step_seconds=step_s,
                         steps_per_run=total_steps, hours_per_run=step_s * total_steps / 3600,
                         hours_all_seeds=seeds * step_s * total_steps / 3600, device=str(pick_device(device))))
    return rows


def estimate_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of :func:`estimate` as a Markdown table with the total."""
    lines = ["| dataset | method | i-Mix | s/step | steps/run | h/run | h for all seeds |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['method']} | {'yes' if r['imix'] else 'no'} | {r['step_seconds']:.3f} "
                     f"| {r['steps_per_run']:,} | {r['hours_per_run']:.1f} | {r['hours_all_seeds']:.1f} |")
    total = sum(r["hours_all_seeds"] for r in rows)
    lines.append(f"\nEstimated pretraining total: {total:.0f} h on {rows[0]['device'] if rows else '?'} "
                 "(an extrapolation from a few measured steps; evaluation not included).")
    return "\n".join(lines)
