"""What the notebooks call around the library: setup, banners, data with a fallback, the CPU protocol.

    from imix_teach.course import setup, load_or_fallback
    device = setup()            # prints one line a reader can check (and a banner in quick mode)
    train, test = load_or_fallback("cifar10", ("train", "test"), per_class=100, image_size=16)
"""
from __future__ import annotations

import contextlib
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import data_root, full_or_quick, offline_mode, pick_device, quick_mode, seed_everything
from ..data import DATASETS, DomainData, MaskingNoise, TabularTransform, load
from ..run_config import Data, Encoder, Evaluation, Method, Mixing, Optim, RunConfig, Runtime


# The first code cell of every notebook (scripts/sync_notebooks.py fills in {repository} from
# pyproject.toml's [project.urls]). It must run before imix_teach exists, so it cannot import it.
# No other braces may appear in it: the script fills the template with str.format.
COLAB_CELL = '''# Installs this course's package where it is missing (Colab, a Jupyter without it), keeping the runtime's own
# torch: from a wheel (`make bundle`) in this folder or in Google Drive, else from the repository.
import glob, importlib, importlib.util, os, subprocess, sys

REPOSITORY = "{repository}"
DRIVE = "/content/drive/MyDrive/"  # where Colab mounts Google Drive
FOLDERS = ["", DRIVE, DRIVE + "*/", DRIVE + "Colab Notebooks/*/"]  # "": the working folder
if importlib.util.find_spec("imix_teach"):
    print("imix-teach is already installed, so this cell installed nothing.")
else:
    wheels = [path for folder in FOLDERS for path in glob.glob(folder + "imix_teach-*.whl")]
    source = max(wheels, key=os.path.getmtime) if wheels else "imix-teach @ git+" + REPOSITORY
    if subprocess.run([sys.executable, "-m", "pip", "install", "-q", source]).returncode:
        raise RuntimeError("Could not install imix-teach from " + source + ". Put imix_teach-*.whl (from `make bundle`) "
                           "in this folder (Colab: the Files pane) or in Google Drive, mounted, and run this cell again.")
    importlib.invalidate_caches()
    print("Installed imix-teach from " + source + ".")
if "google.colab" in sys.modules:  # Colab draws ipywidgets only through its custom widget manager
    from google.colab import output
    output.enable_custom_widget_manager()'''


def banner(*lines: str) -> None:
    """Print a framed notice that a reader cannot miss (quick mode, fallback data)."""
    width = max(len(line) for line in lines)
    rule = "!" * min(width + 4, 100)
    print("\n".join([rule, *(f"! {line}" for line in lines), rule]))


def setup(seed: int = 0, device: str | torch.device | None = None) -> torch.device:
    """Seed everything, pick the device (CUDA, then MPS, then CPU), set plot defaults; print a summary.

    The summary names where data comes from without printing machine paths, so committed
    notebook outputs stay portable. In quick mode a banner says that the numbers below are a
    smoke test, not results.
    """
    seed_everything(seed)
    dev = pick_device(device)
    with contextlib.suppress(ImportError):  # plotting is optional for library use
        import matplotlib.pyplot as plt

        plt.rcParams.update({"figure.dpi": 90, "savefig.dpi": 90, "figure.figsize": (6.4, 3.6)})
    cache = "per-user cache, downloads off (IMIX_OFFLINE)" if offline_mode() else "per-user cache (downloads on first use)"
    data = "$IMIX_DATA" if os.environ.get("IMIX_DATA") else cache
    mode = "QUICK (IMIX_QUICK=1: smallest honest run)" if quick_mode() else "full"
    print(f"imix-teach | torch {torch.__version__.split('+')[0]} | device: {dev.type} | mode: {mode} | data: {data}")
    if quick_mode():
        banner("QUICK MODE (IMIX_QUICK=1): every run below is shrunk to a smoke test.",
               "Its numbers mean nothing; the text between cells describes full-mode results.")
    return dev


# ----------------------------------------------------------------------------- data with a fallback
# Approximate download sizes (MB) of the files each loader fetches, shown before any download.
# ImageNet is never downloaded (its licence needs a manual download): its size only keeps notebooks from trying.
DOWNLOAD_MB = {"cifar10": 170, "cifar100": 170, "speechcommands": 1400, "fsdd": 20, "covtype": 11, "higgs": 2600,
               "imagenet": 150_000, "imagenet100": 15_000}


def digits_table(split: str = "train") -> DomainData:
    """scikit-learn's digits as a table: 64 pixel columns, standardised with training statistics.

    A tabular dataset that needs no files (the fallback for CovType/HIGGS): masking noise with
    p = 0.2 on every column is its augmentation, as for HIGGS in the paper. inputs (N, 64) float32.
    """
    first = load("digits", "train", image_size=8)
    pixels = first.inputs.flatten(1).float()
    # Pixels are 0-255 in steps of about 16 (17 grey levels): a std floor of one level keeps border pixels that are
    # (almost) always 0 in training from blowing up.
    mean, std = pixels.mean(0), pixels.std(0).clamp_min(16.0)
    part = first if split == "train" else load("digits", split, image_size=8)
    rows = (part.inputs.flatten(1).float() - mean) / std
    return DomainData("digits-table", "tabular", split, rows, part.labels, part.classes, (rows.shape[1],),
                      MaskingNoise(0.2), TabularTransform(), {"source": "sklearn.datasets.load_digits, 8x8 pixels as columns"})


def portable(text: str) -> str:
    """``text`` with the data folder written ``$IMIX_DATA`` (when set) and the home folder ``~``, so that an
    output a notebook is committed with names no machine's paths while a reader still sees where to look."""
    if os.environ.get("IMIX_DATA"):
        text = text.replace(str(data_root()), "$IMIX_DATA")
    return text.replace(str(Path.home()), "~")


def _load_all(name: str, splits: tuple[str, ...], download: bool, options: dict[str, Any],
              per_split: dict[str, dict[str, Any]]) -> list[DomainData]:
    if name == "digits-table":
        return [digits_table(split) for split in splits]
    return [load(name, split, download=download, **{**options, **per_split.get(split, {})}) for split in splits]


def load_or_fallback(
    name: str,
    split: str | tuple[str, ...] = ("train", "test"),
    *,
    fallback: str | None = "digits",
    fallback_options: dict[str, Any] | None = None,
    max_download_mb: float = 200,
    per_split: dict[str, dict[str, Any]] | None = None,
    **options: Any,
) -> DomainData | tuple[DomainData, ...] | None:
    """Load ``name`` if it is on disk (or small enough to download); else say why and load ``fallback``.

        train, test = load_or_fallback("cifar10", ("train", "test"), per_class=100, image_size=16)

    - On disk: returned as :func:`imix_teach.data.load` returns it, silently.
    - Missing, downloads allowed (``IMIX_OFFLINE`` unset) and at most ``max_download_mb``: the size
      is printed first, then it downloads once into the data folder.
    - Otherwise (offline, too big, or the download failed): a banner says that the outputs below come
      from ``fallback`` (loaded with ``fallback_options``), followed by the loader's own message
      (what is missing, where it looked, how to get it). ``fallback=None`` returns None instead
      (for a domain with no file-free stand-in: the notebook skips it); ``"digits-table"`` is
      :func:`digits_table`.

    ``split``: one split name (returns one DomainData) or a tuple (returns a tuple, one banner).
    ``per_split``: options for one split only, e.g. ``{"test": {"per_class": 200}}``.
    """
    per_split = per_split or {}
    splits = (split,) if isinstance(split, str) else tuple(split)
    size = DOWNLOAD_MB.get(name)
    try:
        data = _load_all(name, splits, False, options, per_split)
    except FileNotFoundError as err:
        reason = err
        allowed = not offline_mode() and size is not None and size <= max_download_mb
        if allowed:
            print(f"{name} is not on disk: downloading it once (about {size} MB) into the data folder...")
            try:
                data = _load_all(name, splits, True, options, per_split)
            except FileNotFoundError as err2:
                reason = err2
            else:
                return data[0] if isinstance(split, str) else tuple(data)
        if offline_mode():
            why = "downloads are off: IMIX_OFFLINE is set"
        elif not allowed:
            why = f"its download (about {size} MB) is larger than this notebook's limit of {max_download_mb:g} MB"
        else:
            why = "the download failed"
        instead = (f"so the cells below use {fallback} instead. Their outputs will differ from the text, which "
                   f"describes runs on {name}." if fallback else "so the cells below skip it.")
        banner(f"FALLBACK DATA: {name} is not available here ({why}),", instead,
               f"The loader's message says what is missing and how to get {name}:")
        print(textwrap.fill(portable(str(reason)), width=100))
        if fallback is None:
            return None
        known = DATASETS[fallback].splits if fallback in DATASETS else ("train", "test")
        fallback_splits = tuple(s if s in known else "test" for s in splits)
        data = _load_all(fallback, fallback_splits, False, dict(fallback_options or {}), {})
    return data[0] if isinstance(split, str) else tuple(data)


# ----------------------------------------------------------------------------- the shared CIFAR-10 protocol
@dataclass(frozen=True)
class Protocol:
    """The run notebooks 03, 04, 05 and 07 share, so that their numbers can be compared, and its seeds.

    ``config`` is the run (:class:`~imix_teach.run_config.RunConfig`) with i-Mix on; a notebook
    changes only what it compares: ``run(P.config, train, test, alpha=None, seed=1)``.
    CPU-sized by default (1,000 CIFAR-10 images at 16 px, SmallConvNet, 100 epochs, 3 seeds);
    ``paper_scale=True`` gives the paper's CIFAR-10 setting (all 50,000 images at 32 px,
    ResNet-18, 1,000 epochs, heads 2048-128, EMA 0.999, queue 4096): a GPU and days.
    """

    config: RunConfig
    seeds: list[int]
    paper_scale: bool = False

    @property
    def alpha(self) -> float:
        """Beta(alpha, alpha) for lam: the paper's CIFAR value."""
        return self.config.mixing.alpha

    @property
    def tau(self) -> float:
        """The temperature: the paper's CIFAR value."""
        return self.config.method.tau

    @property
    def epochs(self) -> int:
        """Pretraining epochs of every run."""
        return self.config.optim.epochs

    @property
    def batch_size(self) -> int:
        """The pretraining batch."""
        return self.config.optim.batch_size

    def load(self) -> tuple[DomainData, DomainData]:
        """CIFAR-10 train/test at this protocol's sizes, or digits with a banner when CIFAR-10 is missing."""
        data = self.config.data
        return load_or_fallback(data.dataset, ("train", "test"), **data.train_options,
                                per_split={"test": dict(data.test_options)},
                                max_download_mb=float("inf") if self.paper_scale else 200)


def cifar_protocol(method: str = "npair", paper_scale: bool = False, **cpu_changes: Any) -> Protocol:
    """The shared protocol for ``method`` ("npair", "moco", "byol", ...).

    ``cpu_changes`` change the CPU-sized protocol only (a notebook's own time budget, e.g.
    ``epochs=30`` or ``seeds=[0, 1]``; any field of the run by name); the paper-scale protocol is
    always the paper's.
    """
    if paper_scale:
        heads: dict[str, Any] = {"moco": dict(queue_size=4096, momentum=0.999), "byol": dict(momentum=0.999)}.get(method, {})
        config = RunConfig(data=Data("cifar10", dict(image_size=32), dict(image_size=32)), encoder=Encoder("resnet", 18),
                           method=Method(method, tau=0.2, scale="paper", options=heads), mixing=Mixing(alpha=1.0),
                           optim=Optim(epochs=1000, batch_size=256), runtime=Runtime(progress=False))
        return Protocol(config, [0], paper_scale=True)
    size = dict(image_size=16)
    config = RunConfig(data=Data("cifar10", dict(size, per_class=full_or_quick(100, 20)),
                                 dict(size, per_class=full_or_quick(200, 20))),
                       method=Method(method, tau=0.2), mixing=Mixing(alpha=1.0),
                       optim=Optim(epochs=full_or_quick(100, 2), batch_size=full_or_quick(128, 64)),
                       runtime=Runtime(progress=False), evaluation=Evaluation(probe_epochs=full_or_quick(100, 20)))
    seeds = cpu_changes.pop("seeds", full_or_quick([0, 1, 2], [0]))
    return Protocol(config.replace(**cpu_changes) if cpu_changes else config, list(seeds))
