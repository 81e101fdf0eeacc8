"""The grid: every (dataset, method, i-Mix on/off, seed) run of a preset, each with a stable key."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .presets import DEFAULT_METHODS, DOMAINS, METHOD_CHOICES, DatasetSpec, Preset, override

@dataclass(frozen=True)
class RunSpec:
    preset: str
    spec: DatasetSpec
    method: str
    imix: bool
    seed: int
    mix_options: tuple[tuple[str, Any], ...] = ()
    amp: str = "auto"
    channels_last: bool | str = "auto"
    compile: bool = False

    @property
    def alpha(self) -> float | None:
        """i-Mix's alpha for this run, None for the baseline."""
        return self.spec.alpha if self.imix else None

    def config(self) -> dict[str, Any]:
        """Everything that shapes the run's numbers (the seed and i-Mix switch are in the key itself)."""
        spec = self.spec.as_dict()
        spec["method_kwargs"] = spec["method_kwargs"].get(self.method, {})
        spec.pop("notes")
        spec.pop("paper")
        return dict(spec=spec, mix_options=dict(self.mix_options), amp=self.amp,
                    channels_last=self.channels_last, compile=self.compile)

    def config_hash(self) -> str:
        """10 hex digits of a hash of :meth:`config`: a changed setting makes a new run."""
        return hashlib.sha1(json.dumps(self.config(), sort_keys=True, default=str).encode()).hexdigest()[:10]

    @property
    def key(self) -> str:
        """preset/dataset/method/alpha/seed/hash: the run's name in ``runs.json``."""
        alpha = f"alpha{self.spec.alpha:g}" if self.imix else "baseline"
        return f"{self.preset}/{self.spec.dataset}/{self.method}/{alpha}/seed{self.seed}/{self.config_hash()}"


def plan(preset: Preset, domains: Sequence[str] = DOMAINS, methods: Sequence[str] = DEFAULT_METHODS,
         seeds: int | Sequence[int] = 3, *, datasets: Sequence[str] | None = None, **overrides: Any) -> list[RunSpec]:
    """Every run of the grid, seed-major (all of seed 0 first), so a partial table already covers all cells.

    datasets: keep only these dataset names of the chosen domains (e.g. ``["cifar10"]``).
    """
    bad = [d for d in domains if d not in DOMAINS]
    if bad:
        raise ValueError(f"domain must be among {list(DOMAINS)} (or 'all'), got {bad}")
    bad = [m for m in methods if m not in METHOD_CHOICES]
    if bad:
        raise ValueError(f"methods must be among {list(METHOD_CHOICES)}, got {bad}")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ValueError("seeds must be >= 1")
    specs = [override(s, **overrides) for d in domains for s in preset.domain(d)]
    if datasets is not None:
        known = {s.dataset for s in specs}
        bad = [d for d in datasets if d not in known]
        if bad:
            raise ValueError(f"datasets must be among {sorted(known)} (preset {preset.name!r}, domains {list(domains)}), "
                             f"got {bad}")
        specs = [s for s in specs if s.dataset in datasets]
    mix = tuple(sorted(preset.mix_options.items()))
    return [RunSpec(preset.name, s, m, imix, seed, mix, preset.amp, preset.channels_last, preset.compile)
            for seed in seed_list for s in specs for m in methods for imix in (False, True)]
