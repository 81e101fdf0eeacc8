"""The container every loader returns, the dataset registry, and ``load``.

A loader reads one split of one dataset into memory and wraps it in a :class:`DomainData`:
raw ``inputs`` (uint8 images, float32 waveforms or standardised float32 tables), integer
``labels``, and two batch functions that the training loop calls on any device:

- ``augment(x, generator)``: one random, model-ready *view* per row (call it twice for two views);
- ``transform(x)``: the deterministic evaluation transform.

Keeping raw rows in memory and augmenting whole batches on the device (instead of per-sample
in DataLoader workers) is what makes contrastive training fast on 2 CPU cores or one GPU.
"""
from __future__ import annotations

import gzip
import os
import tarfile
import uuid
import warnings
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from ..config import data_root, offline_mode
from ..files import atomic_write
from . import digests
from .digests import digest, digest_record

Augmenter = Callable[[Tensor, Optional[torch.Generator]], Tensor]
Transformer = Callable[[Tensor], Tensor]


@dataclass(repr=False)
class DomainData:
    """One split of one dataset, in memory.

    Attributes:
        name, domain, split: e.g. ``"cifar10"``, ``"image"``, ``"train"``.
        inputs: raw rows, shape (N, ...). Images uint8 (N, C, H, W); speech float32 (N, 16000);
            tabular float32 (N, F), standardised with train statistics.
        labels: int64 (N,), values in ``range(len(classes))``.
        classes: class names, index = label.
        input_shape: shape of ONE model-ready sample (after ``augment``/``transform``),
            e.g. (3, 32, 32), (1, 32, 32), (54,).
        augmenter / transformer: the callables behind :meth:`augment` / :meth:`transform`.
        info: provenance and settings (source path, split rule, normalisation, file names...).
    """

    name: str
    domain: str
    split: str
    inputs: Tensor
    labels: Tensor
    classes: list[str]
    input_shape: tuple[int, ...]
    augmenter: Augmenter
    transformer: Transformer
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.inputs.shape[0] != self.labels.shape[0]:
            raise ValueError(f"inputs has {self.inputs.shape[0]} rows but labels has {self.labels.shape[0]}")
        self.labels = self.labels.long()

    def augment(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A batch of raw rows (N, ...) on any device -> one random view (N, *input_shape), float32.

        Every random number comes from ``generator`` when given, so a seeded generator gives
        the same views; the generator may live on x's device or on the CPU.
        """
        return self.augmenter(x, generator)

    def transform(self, x: Tensor) -> Tensor:
        """A batch of raw rows (N, ...) -> deterministic model-ready batch (N, *input_shape), float32."""
        return self.transformer(x)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        """How many classes the labels index."""
        return len(self.classes)

    def class_counts(self) -> Tensor:
        """Examples per class, shape (len(classes),)."""
        return torch.bincount(self.labels, minlength=len(self.classes))

    def subset(self, indices: Sequence[int] | Tensor) -> DomainData:
        """The rows ``indices`` (same transforms, same classes); ``info['files']`` follows along."""
        idx = torch.as_tensor(indices, dtype=torch.long).flatten()
        info = dict(self.info)
        if isinstance(info.get("files"), list):
            info["files"] = [info["files"][i] for i in idx.tolist()]
        info["subset_of"] = len(self)
        return replace(self, inputs=self.inputs[idx], labels=self.labels[idx], info=info)

    def __repr__(self) -> str:
        return (
            f"DomainData(name={self.name!r}, domain={self.domain!r}, split={self.split!r}, n={len(self)}, "
            f"inputs={tuple(self.inputs.shape)} {self.inputs.dtype}, classes={len(self.classes)}, "
            f"input_shape={self.input_shape})"
        )


# ----------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class DatasetInfo:
    """What :func:`load` knows about a name: domain, valid splits, options (with defaults)."""

    domain: str
    splits: tuple[str, ...]
    options: dict[str, Any]
    description: str
    loader: Callable[..., DomainData] = field(repr=False, compare=False)


DATASETS: dict[str, DatasetInfo] = {}


def register(name: str, domain: str, splits: tuple[str, ...], options: dict[str, Any],
             description: str) -> Callable[[Callable[..., DomainData]], Callable[..., DomainData]]:
    """Decorator: ``@register("fsdd", "speech", ("train", "test"), {...}, "...")`` on a loader."""

    def wrap(fn: Callable[..., DomainData]) -> Callable[..., DomainData]:
        DATASETS[name] = DatasetInfo(domain, splits, dict(options), description, fn)
        return fn

    return wrap


@dataclass
class Source:
    """Where a loader reads from and whether it may download: passed to every loader."""

    name: str
    root: Path
    root_from: str
    download: bool
    download_reason: str

    def missing(self, what: str, path: Path, extra: str = "") -> FileNotFoundError:
        """The error for absent data: what, the full path looked at, and the two ways out."""
        return FileNotFoundError(
            f"{self.name}: {what} not found at {Path(path).absolute()} "
            f"(data root {self.root.absolute()}, taken from {self.root_from}; {self.download_reason}). "
            f"Either pass download=True to fetch it, or point IMIX_DATA at a copy that has it, "
            f"e.g. `export IMIX_DATA=/path/to/data` (or pass root=...).{(' ' + extra) if extra else ''}"
        )

    def download_failed(self, what: str, path: Path, err: BaseException) -> FileNotFoundError:
        """The error to raise when ``what`` is missing at ``path`` and its download failed with ``err``."""
        return FileNotFoundError(
            f"{self.name}: {what} not found at {Path(path).absolute()} and downloading it failed "
            f"({type(err).__name__}: {err}). Point IMIX_DATA at an offline copy "
            f"(e.g. `export IMIX_DATA=/path/to/data`) or retry download=True with internet access."
        )


def make_source(name: str, root: str | os.PathLike | None, download: bool | None) -> Source:
    """Resolve the root (argument > $IMIX_DATA > per-user cache) and the download policy.

    ``download=None`` downloads missing data unless ``IMIX_OFFLINE`` is set; ``True``/``False`` force it.
    """
    if root is not None:
        root_from = "the root argument"
    elif os.environ.get("IMIX_DATA"):
        root_from = "$IMIX_DATA"
    else:
        root_from = "the default cache (neither root= nor $IMIX_DATA given)"
    if download is None:
        allowed = not offline_mode()
        reason = "download off because IMIX_OFFLINE is set" if not allowed else "download allowed"
    else:
        allowed = bool(download)
        reason = "download=False" if not allowed else "download=True"
    return Source(name, data_root(root), root_from, allowed, reason)


def load(
    name: str,
    split: str = "train",
    root: str | os.PathLike | None = None,
    download: bool | None = None,
    **options: Any,
) -> DomainData:
    """Load one split of a dataset into memory: ``load("cifar10", "test", per_class=50)``.

    Args:
        name: a key of :data:`DATASETS` (``digits``, ``cifar10``, ``cifar100``, ``speechcommands``,
            ``fsdd``, ``covtype``, ``higgs``).
        split: one of ``DATASETS[name].splits``.
        root: data root; else ``$IMIX_DATA``; else ``~/.cache/imix_teach``.
        download: ``None`` = download missing data unless ``$IMIX_OFFLINE`` is set; ``True``/``False``.
        **options: dataset options, see ``DATASETS[name].options`` (unknown ones raise ``ValueError``).
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in DATASETS:
        raise ValueError(f"name={name!r} is not a known dataset; valid names: {sorted(DATASETS)}")
    info = DATASETS[key]
    if split not in info.splits:
        raise ValueError(f"split={split!r} is not valid for {key!r}; valid splits: {list(info.splits)}")
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for {key!r}; valid options: {sorted(info.options)}")
    for option, value in options.items():
        _check_option_type(option, value, info.options[option])
    opts = {**info.options, **options}
    if "seed" in opts:
        check_int("seed", opts["seed"], 0)
    return info.loader(make_source(key, root, download), split, **opts)


def _check_option_type(option: str, value: Any, default: Any) -> None:
    """An option takes the type of its default (an int for 16, a number for 0.2, a str for "numeric")."""
    for kind, allowed, label in ((str, str, "a str"), (int, int, "an int"), (float, (int, float), "a number")):
        if isinstance(default, kind) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, allowed):
                raise TypeError(f"{option} must be {label} like its default {default!r}, got {type(value).__name__} "
                                f"{value!r}")
            return


# ----------------------------------------------------------------------------- helpers for loaders
def check_int(arg: str, value: Any, minimum: int = 1, allow_none: bool = False) -> int | None:
    """``value`` as an int >= minimum, else ``ValueError`` naming ``arg``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{arg} must be an integer >= {minimum}{' or None' if allow_none else ''}, got {value!r}")
    return value


def check_choice(arg: str, value: Any, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices``, else a ValueError naming ``arg`` and the valid values."""
    if value not in choices:
        raise ValueError(f"{arg}={value!r} is not valid; valid values: {list(choices)}")
    return value


def per_class_indices(labels: Tensor, num_classes: int, per_class: int, seed: int, what: str = "") -> Tensor:
    """A seeded choice of ``per_class`` rows of each class, sorted: int64 (<= num_classes * per_class,).

    Classes with fewer rows keep all of them (with a warning naming them).
    """
    g = torch.Generator().manual_seed(seed)
    chosen, short = [], []
    for c in range(num_classes):
        idx = (labels == c).nonzero().flatten()
        if len(idx) < per_class:
            short.append((c, len(idx)))
        chosen.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    if short:
        warnings.warn(f"{what}per_class={per_class}: these classes have fewer rows and keep all of them: "
                      f"{short} (class, rows)", stacklevel=3)
    return torch.cat(chosen).sort().values


def rand(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    """U(0, 1) numbers on ``like``'s device, drawn from ``generator`` (on its own device) if given."""
    device = generator.device if generator is not None else like.device
    return torch.rand(shape, device=device, generator=generator).to(like.device)


def randn(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    """N(0, 1) numbers on ``like``'s device, drawn from ``generator`` (on its own device) if given."""
    device = generator.device if generator is not None else like.device
    return torch.randn(shape, device=device, generator=generator).to(like.device)


def uniform(n: int, low: float, high: float, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """(n,) numbers ~ U(low, high) on ``like``'s device."""
    return low + (high - low) * rand((n,), like, generator)


def fetch(src: Source, url: str, dest: Path, what: str, md5: str | None = None, *,
          sha256: str | None = None, size: int | None = None) -> Path:
    """Download ``url`` to ``dest``: into a uniquely named temporary file, checked, then renamed.

    Checks: ``size`` in bytes and ``md5``/``sha256`` when the publisher gives them, and a full read
    of gzip/tar/zip archives (their CRCs catch a cut or damaged transfer). Only a file that passes
    becomes ``dest``, so an interrupted download (Ctrl-C, a lost connection) is never taken for a
    complete one, and two processes downloading at once do not share a temporary file.
    Failures raise ``FileNotFoundError`` with the way out.
    """
    from torchvision.datasets.utils import download_url

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f".{dest.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
    try:
        download_url(url, str(dest.parent), part.name)
        problem = file_problem(part, size=size, md5=md5, sha256=sha256, kind=dest.name)
        if problem is not None:
            raise RuntimeError(f"the transfer is unusable: {problem}")
    except BaseException as err:  # Ctrl-C too: never leave a partial file behind
        part.unlink(missing_ok=True)
        if isinstance(err, Exception):  # network, HTTP, size, checksum or archive: the same advice
            raise src.download_failed(what, dest, err) from err
        raise
    os.replace(part, dest)
    # The digest of the checked download, kept beside it, lets every later load notice a file
    # changed or damaged since (see verify_file), whether or not its publisher gives one.
    atomic_write(digest_record(dest), f"{digest(dest)}  {dest.name}\n")
    return dest


def verify_file(path: Path, known: Mapping[str, str] | None = None, **checks: Any) -> Path:
    """``path`` if :func:`file_problem` finds nothing wrong, else ``ValueError`` naming it and the fix.

    Loaders call it with ``full_read=False`` on files already in place (their reader meets any
    damage inside and names the file too): an empty file then names itself instead of parsing as
    a dataset with no rows. Unless ``checks`` give a sha256, the file must be one of the ``known``
    copies (sha256 -> description) or match the digest recorded at its download or first load
    (:mod:`~imix_teach.data.digests`), so a file changed since (edited, tampered with, damaged on
    disk) is not loaded; a new file's loader records it with :func:`~imix_teach.data.digests.remember`.
    """
    problem = file_problem(path, **checks)
    if problem is None and "sha256" not in checks:
        problem = digests.problem(path, known or {})
    if problem is not None:
        raise ValueError(f"{path} cannot be used: {problem}. It is probably cut or damaged: delete it and "
                         "download it again (download=True), or point IMIX_DATA at a good copy.")
    return path


def file_problem(path: Path, *, size: int | None = None, md5: str | None = None, sha256: str | None = None,
                 kind: str | None = None, full_read: bool = True) -> str | None:
    """What is wrong with ``path`` (None: nothing found).

    Checks that it is not empty, its ``size`` and digests when given, and with ``full_read`` reads
    gzip (``.gz``, ``.tgz``), tar and zip archives through to the end; ``kind`` names the format
    (default: the file name).
    """
    actual = path.stat().st_size
    if actual == 0:
        return "it is empty (0 bytes)"
    if size is not None and actual != size:
        return f"it has {actual:,} bytes, expected {size:,}"
    for name, want in (("md5", md5), ("sha256", sha256)):
        if want is not None and digest(path, name) != want.lower():
            return f"its {name} is not the expected {want} (published, or recorded at download)"
    if full_read:
        try:
            _read_archive(path, (kind or path.name).lower())
        except (OSError, EOFError, zlib.error, tarfile.TarError, zipfile.BadZipFile) as err:
            return f"it is not a complete archive ({type(err).__name__}: {err})"
    return None


def _read_archive(path: Path, kind: str) -> None:
    """Read an archive to its end: gzip checks its CRC-32 and length there, tar and zip their members."""
    if kind.endswith((".gz", ".tgz")):
        with gzip.open(path, "rb") as fh:
            while fh.read(1 << 20):  # reading to the end is the check: gzip verifies CRC-32 and length there
                continue
    if kind.endswith((".tar", ".tar.gz", ".tgz")):
        with tarfile.open(path) as tar:
            tar.getmembers()
    if kind.endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise zipfile.BadZipFile(f"member {bad} fails its CRC check")
