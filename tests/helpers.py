"""Shared by several test files: ``pretrain`` called with its settings by name, as a RunConfig names them;
the texts that quote a committed grid."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from imix_teach.run_config import Checkpointing, RunConfig
from imix_teach.train import History, pretrain


def pretrain_flat(method, inputs, augment, *, checkpoint=None, resume: bool = True, labels=None, callback=None,
                  **settings: Any) -> History:
    """``pretrain`` with ``epochs=2, alpha=1.0, progress=False, ...``: each setting goes to its group
    (:meth:`RunConfig.replace` knows which), so a test can vary any of them from one dict."""
    config = RunConfig().replace(**settings)
    return pretrain(method, inputs, augment, optim=config.optim, mixing=config.mixing, runtime=config.runtime,
                    checkpoint=None if checkpoint is None else Checkpointing(checkpoint, resume), labels=labels,
                    seed=config.seed, callback=callback)


def tiny_preset(epochs: int = 1):
    """A reproduce preset of one dataset that needs no files: 60 digits, tiny heads, a few probe epochs."""
    from imix_teach import reproduce as rp
    from imix_teach.run_config import Data, Encoder, Evaluation, Method, Mixing, Optim

    template = RunConfig(data=Data("digits", dict(per_class=6), dict(per_class=4)), encoder=Encoder("small", 8),
                         method=Method(tau=0.2), mixing=Mixing(alpha=1.0), optim=Optim(epochs=epochs, batch_size=32),
                         evaluation=Evaluation(probe_epochs=3))
    spec = rp.DatasetSpec("image", template, {m: dict(proj_hidden=16, proj_dim=8) for m in rp.METHOD_CHOICES})
    return rp.Preset("tiny", (spec,), "test preset")


def result(method: str, alpha: float | None, seed: int, **scores: Any):
    """A :class:`~imix_teach.engine.RunResult` with known scores (no training): for the tables and plots."""
    from imix_teach.engine import RunResult

    return RunResult(RunConfig().replace(name=method, alpha=alpha, seed=seed), **scores)


ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"[+−-]?\d+\.\d(?: ± \d+\.\d)?")  # a number as the grids' reports format it


def quoting_texts(marker: str) -> list[tuple[str, str]]:
    """(where, text) of each README or docs/ block and notebook markdown cell carrying ``marker``: the
    texts that quote a committed grid (a block of a page ends at the next HTML comment)."""
    import nbformat

    texts = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        name = str(path.relative_to(ROOT))
        texts += [(name, block.split("<!--", 1)[0]) for block in path.read_text().split(marker)[1:]]
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for k, cell in enumerate(nbformat.read(path, as_version=4).cells):
            if cell.cell_type == "markdown" and marker in cell.source:
                texts.append((f"{path.name} cell {k}", cell.source.replace(marker, "")))
    return texts
